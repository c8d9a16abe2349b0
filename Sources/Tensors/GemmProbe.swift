import Dispatch

/// GEMM rates measured in the running process: the peak that MFU is counted against, and the
/// rate at a training step's own shapes that `elle bench` compares the step with.
public enum GemmProbe {
    /// FLOP-weighted GFLOP/s of `gemm` over these products (in their precision), each timed alone (best of 4) on
    /// freshly allocated operands.
    public static func gflops(_ calls: [Profiler.GemmShape]) -> Double {
        var counts: [Profiler.GemmShape: Int] = [:]
        for shape in calls { counts[shape, default: 0] += 1 }
        var flops = 0.0, seconds = 0.0
        for (shape, count) in counts {
            let a = FloatBuffer(count: shape.m * shape.k), b = FloatBuffer(count: shape.k * shape.n)
            let c = FloatBuffer(count: shape.m * shape.n)
            fillUniform(a)
            fillUniform(b)
            // A bf16 product's operands are bf16 (`shape.precision`).
            var operands = (Operand.fp32(a.pointer), Operand.fp32(b.pointer))
            let a16 = Buffer<BF16>(count: shape.precision == .bf16 ? a.count : 0)
            let b16 = Buffer<BF16>(count: shape.precision == .bf16 ? b.count : 0)
            if shape.precision == .bf16 {
                BF16Convert.convert(a.pointer, a16.pointer, count: a.count)
                BF16Convert.convert(b.pointer, b16.pointer, count: b.count)
                operands = (.bf16(a16.pointer), .bf16(b16.pointer))
            }
            var best = Double.infinity
            for _ in 0..<4 {
                let start = DispatchTime.now().uptimeNanoseconds
                gemm(transA: shape.transA, transB: shape.transB, m: shape.m, n: shape.n, k: shape.k,
                     operands.0, lda: shape.transA ? shape.m : shape.k, operands.1, ldb: shape.transB ? shape.k : shape.n,
                     beta: 0, c.pointer, ldc: shape.n)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            flops += shape.flops * Double(count)
            seconds += best * Double(count)
        }
        return flops / seconds / 1e9
    }

    /// This process's GEMM rate at 1024^3 on its configured threads, with operands of
    /// `precision`: the peak for MFU (a bf16 run's is the bf16 rate).
    public static func peakGFLOPS(precision: Precision = .fp32) -> Double {
        gflops([Profiler.GemmShape(transA: false, transB: false, m: 1024, n: 1024, k: 1024, precision: precision)])
    }

    static func fillUniform(_ buffer: FloatBuffer) {
        var rng = Xoshiro256(seed: UInt64(buffer.count))
        for i in 0..<buffer.count { buffer[i] = rng.nextFloat() - 0.5 }
    }
}
