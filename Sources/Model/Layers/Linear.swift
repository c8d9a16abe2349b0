import Tensors

/// y = x W^T + b with W stored (out, in), as nn.Linear. The products read x and W as float32, or
/// both as bf16 under mixed precision; y, the bias and every gradient are float32.
public enum Linear {
    /// out (N, O); x (N, I); weight (O, I); bias (O) or nil
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: Operand, weight: Operand,
        bias: UnsafePointer<Float>?, rows n: Int, inFeatures i: Int, outFeatures o: Int
    ) {
        if let bias {
            Parallel.forRanges(n, minimum: 16) { _, rows in
                for row in rows { (out + row * o).update(from: bias, count: o) }
            }
        }
        gemm(transA: false, transB: true, m: n, n: o, k: i, x, lda: i, weight, ldb: i,
             beta: bias == nil ? 0 : 1, out, ldc: o)
    }

    /// How backward's products read the output gradient under bf16 (it arrives in float32).
    public enum GradientCopy {
        /// float32 products: dout as it is.
        case none
        /// Converted into this (N, O) scratch, in the bias-gradient pass.
        case into(UnsafeMutablePointer<BF16>)
        /// Converted in place after the bias gradient: row r's bf16 values at the start of its own
        /// float row (row stride 2 O), so a large gradient (the logits') needs no second buffer.
        case inPlace
        /// Already converted that way by the kernel that produced it (no bias).
        case convertedInPlace
    }

    /// dx = dout W (or += when `accumulateInput`); dweight += dout^T x; dbias += column sums of
    /// dout (float32). dx may be nil when the input needs no gradient. x and weight are the
    /// operands forward read; `doutCopy` says how the products read dout (bf16 operands need it).
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafeMutablePointer<Float>, x: Operand,
        weight: Operand, rows n: Int, inFeatures i: Int, outFeatures o: Int,
        accumulateInput: Bool = false, doutCopy: GradientCopy = .none, weightGradientDone: (() -> Void)? = nil
    ) {
        var gradient = Operand.fp32(dout), ld = o
        switch doutCopy {
        case .none:
            if let dbias { addColumnSums(dbias, dout, rows: n, cols: o) }
        case .into(let copy):
            if let dbias {
                addColumnSums(dbias, dout, rows: n, cols: o, copy: copy)
            } else {
                Profiler.measure(.conversion) { BF16Convert.convert(dout, copy, count: n * o) }
            }
            gradient = .bf16(copy)
        case .inPlace:
            if let dbias { addColumnSums(dbias, dout, rows: n, cols: o) }
            Profiler.measure(.conversion) { BF16Convert.inPlace(dout, rows: n, cols: o) }
            gradient = .bf16(bf16(dout))
            ld = 2 * o
        case .convertedInPlace:
            precondition(dbias == nil, "a bias gradient needs the float32 output gradient")
            gradient = .bf16(bf16(dout))
            ld = 2 * o
        }
        // The weight's gradient first: it is then final (`weightGradientDone`, e.g. to start its
        // all-reduce) while the input's is computed. The two products are independent.
        gemm(transA: true, transB: false, m: o, n: i, k: n, gradient, lda: ld, x, ldb: i,
             beta: 1, dweight, ldc: i)
        weightGradientDone?()
        if let dx {
            gemm(transA: false, transB: false, m: n, n: i, k: o, gradient, lda: ld, weight, ldb: i,
                 beta: accumulateInput ? 1 : 0, dx, ldc: i)
        }
    }

    /// Float32 operands.
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, rows n: Int, inFeatures i: Int, outFeatures o: Int
    ) {
        forward(out: out, x: .fp32(x), weight: .fp32(weight), bias: bias, rows: n, inFeatures: i, outFeatures: o)
    }

    /// Float32 operands.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows n: Int, inFeatures i: Int, outFeatures o: Int,
        accumulateInput: Bool = false
    ) {
        backward(dx: dx, dweight: dweight, dbias: dbias, dout: UnsafeMutablePointer(mutating: dout), x: .fp32(x),
                 weight: .fp32(weight), rows: n, inFeatures: i, outFeatures: o, accumulateInput: accumulateInput)
    }

    /// acc[c] += sum over rows of m[row, c], rows summed in order (reproducible); with `copy`, the
    /// same pass writes m's bf16 values there (same layout).
    public static func addColumnSums(
        _ acc: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, rows n: Int, cols: Int,
        copy: UnsafeMutablePointer<BF16>? = nil
    ) {
        if let copy {
            columnSums(acc, m, rows: n, cols: cols, copy: BF16Sink(copy))
        } else {
            columnSums(acc, m, rows: n, cols: cols, copy: NoSink())
        }
    }

    /// Columns go in chunks of 64 (4 vectors) so each row's part of a chunk is whole cache lines,
    /// read and (for the bf16 copy) written; a column's sum runs over the rows in order either way.
    private static func columnSums<Sink: VectorSink>(
        _ acc: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, rows n: Int, cols: Int, copy: Sink
    ) {
        Parallel.forRanges(cols, grain: 4 * vecWidth) { _, range in
            var c = range.lowerBound
            while c + 4 * vecWidth <= range.upperBound {
                var s0 = loadVec(acc + c), s1 = loadVec(acc + c + 16), s2 = loadVec(acc + c + 32), s3 = loadVec(acc + c + 48)
                for row in 0..<n {
                    let i = row * cols + c
                    let v0 = loadVec(m + i), v1 = loadVec(m + i + 16), v2 = loadVec(m + i + 32), v3 = loadVec(m + i + 48)
                    s0 += v0; s1 += v1; s2 += v2; s3 += v3
                    copy.store(v0, at: i); copy.store(v1, at: i + 16); copy.store(v2, at: i + 32); copy.store(v3, at: i + 48)
                }
                storeVec(s0, acc + c); storeVec(s1, acc + c + 16); storeVec(s2, acc + c + 32); storeVec(s3, acc + c + 48)
                c += 4 * vecWidth
            }
            while c + vecWidth <= range.upperBound {
                var s = loadVec(acc + c)
                for row in 0..<n { let v = loadVec(m + row * cols + c); s += v; copy.store(v, at: row * cols + c) }
                storeVec(s, acc + c)
                c += vecWidth
            }
            while c < range.upperBound {
                var s = acc[c]
                for row in 0..<n { s += m[row * cols + c]; copy.store(m[row * cols + c], at: row * cols + c) }
                acc[c] = s
                c += 1
            }
        }
    }
}
