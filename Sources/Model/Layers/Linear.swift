import Tensors

/// y = x W^T + b with W stored (out, in), as nn.Linear.
public enum Linear {
    /// out (N, O); x (N, I); weight (O, I); bias (O) or nil
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
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

    /// dx = dout W (or += when `accumulateInput`); dweight += dout^T x; dbias += column sums of dout.
    /// dx may be nil when the input needs no gradient.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows n: Int, inFeatures i: Int, outFeatures o: Int,
        accumulateInput: Bool = false
    ) {
        if let dx {
            gemm(transA: false, transB: false, m: n, n: i, k: o, dout, lda: o, weight, ldb: i,
                 beta: accumulateInput ? 1 : 0, dx, ldc: i)
        }
        gemm(transA: true, transB: false, m: o, n: i, k: n, dout, lda: o, x, ldb: i,
             beta: 1, dweight, ldc: i)
        if let dbias { addColumnSums(dbias, dout, rows: n, cols: o) }
    }

    /// acc[c] += sum over rows of m[row, c], rows summed in order (reproducible).
    public static func addColumnSums(
        _ acc: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, rows n: Int, cols: Int
    ) {
        Parallel.forRanges(cols, grain: vecWidth) { _, range in
            var c = range.lowerBound
            while c + vecWidth <= range.upperBound {
                var s = loadVec(acc + c)
                for row in 0..<n { s += loadVec(m + row * cols + c) }
                storeVec(s, acc + c)
                c += vecWidth
            }
            while c < range.upperBound {
                var s = acc[c]
                for row in 0..<n { s += m[row * cols + c] }
                acc[c] = s
                c += 1
            }
        }
    }
}
