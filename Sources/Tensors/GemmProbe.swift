import Dispatch

/// GEMM rates measured in the running process: the peak that MFU is counted against, and the
/// rate at a training step's own shapes that `elle bench` compares the step with.
public enum GemmProbe {
    /// FLOP-weighted GFLOP/s of `gemm` over these products, each timed alone (best of 4) on
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
            var best = Double.infinity
            for _ in 0..<4 {
                let start = DispatchTime.now().uptimeNanoseconds
                gemm(transA: shape.transA, transB: shape.transB, m: shape.m, n: shape.n, k: shape.k,
                     a.pointer, lda: shape.transA ? shape.m : shape.k, b.pointer, ldb: shape.transB ? shape.k : shape.n,
                     beta: 0, c.pointer, ldc: shape.n)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            flops += shape.flops * Double(count)
            seconds += best * Double(count)
        }
        return flops / seconds / 1e9
    }

    /// This process's GEMM rate at 1024^3 on its configured threads: the peak for MFU.
    public static func peakGFLOPS() -> Double {
        gflops([Profiler.GemmShape(transA: false, transB: false, m: 1024, n: 1024, k: 1024)])
    }

    static func fillUniform(_ buffer: FloatBuffer) {
        var rng = Xoshiro256(seed: UInt64(buffer.count))
        for i in 0..<buffer.count { buffer[i] = rng.nextFloat() - 0.5 }
    }
}
