/// bf16 products (`gemm` with bf16 operands).
///
/// A product is cut into tiles that depend on its shape only: `tiles` pieces along the longer side
/// of C (boundaries multiples of 16), or one piece when it is small. The tiles are dealt to elle's
/// workers and each is one single-threaded library call, so every element of C is computed by the
/// same call on the same data whatever the thread count, and the results are bit-identical for
/// any number of threads by construction (not by a property of the library's blocking).
enum GemmBF16 {
    /// Pieces per product: 2, one per core of the 2-core machine elle is tuned on. At the GPT
    /// 6/384 step 2 pieces ran 2% faster than 4 and 4% faster than 8 (docs/PERFORMANCE.md); on a
    /// machine with more cores raise it (results then change, but stay the same for every thread
    /// count and rank count).
    static let tiles = 2
    /// Products under this many multiply-adds run as one piece (a call costs about 1 us).
    static let smallProduct = 1 << 21

    static func tiled(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<BF16>, _ lda: Int, _ b: UnsafePointer<BF16>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        let alongRows = m >= n
        let length = alongRows ? m : n
        var step = length
        if m * n * k >= smallProduct {
            step = min(length, ((length + tiles - 1) / tiles + 15) / 16 * 16)
        }
        let count = (length + step - 1) / step
        Parallel.forRanges(count) { _, range in
            for tile in range {
                let start = tile * step, size = min(step, length - start)
                if alongRows {
                    serial(transA, transB, size, n, k, alpha, transA ? a + start : a + start * lda, lda,
                           b, ldb, beta, c + start * ldc, ldc)
                } else {
                    serial(transA, transB, m, size, k, alpha, a, lda, transB ? b + start * ldb : b + start, ldb,
                           beta, c + start, ldc)
                }
            }
        }
    }

    /// One product on the calling thread.
    @inline(__always)
    static func serial(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<BF16>, _ lda: Int, _ b: UnsafePointer<BF16>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // Nothing to accumulate: C = beta C.
            for r in 0..<m {
                let row = c + r * ldc
                if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
            }
            return
        }
        if OneDNN.hasNativeBF16 {
            let key = OneDNN.Key(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
                                 alpha: alpha, beta: beta)
            OneDNN.matmul(key, a, b, c)
        } else {
            widened(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
    }

    /// Widens both operands to float32 (exactly) in this thread's scratch and calls OpenBLAS.
    private static func widened(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<BF16>, _ lda: Int, _ b: UnsafePointer<BF16>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        // As stored: A is (k, m) when transposed, else (m, k); B likewise.
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let (bRows, bCols) = transB ? (n, k) : (k, n)
        let scratch = WideningScratch.current.reserve(aRows * aCols + bRows * bCols)
        let aWide = scratch, bWide = scratch + aRows * aCols
        for r in 0..<aRows { BF16Convert.widenSerial(a + r * lda, aWide + r * aCols, count: aCols) }
        for r in 0..<bRows { BF16Convert.widenSerial(b + r * ldb, bWide + r * bCols, count: bCols) }
        sgemmSerial(transA, transB, m, n, k, alpha, aWide, aCols, bWide, bCols, beta, c, ldc)
    }
}

/// A thread's float32 scratch for widened operands, grown as needed.
private final class WideningScratch {
    private var buffer = FloatBuffer(count: 0)

    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if buffer.count < count { buffer = FloatBuffer(count: count, zeroed: false) }
        return buffer.pointer
    }

    private static let perThread = ThreadLocal { WideningScratch() }
    static var current: WideningScratch { perThread.value }
}
