import COpenBLAS

/// Row-major single-precision matrix product C = alpha * op(A) * op(B) + beta * C, with op(A) of
/// shape (m, k) and op(B) of shape (k, n); `transA`/`transB` say whether A/B are stored transposed.
///
/// Large products are split into `Parallel.threads` blocks of rows of C (or of columns, when C is
/// wider than tall), each computed by single-threaded OpenBLAS. Block boundaries are multiples of
/// 64 so OpenBLAS's micro-kernel tiles, and hence the rounding of every element, do not depend on
/// the thread count; products whose blocks would be small (`smallMatrixLimit`) are not split.
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    Profiler.record(Profiler.GemmShape(transA: transA, transB: transB, m: m, n: n, k: k))
    Profiler.measure(.gemm) {
        splitGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

private func splitGemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    // Split the longer side of C into blocks of 64; keep the product whole unless every block
    // stays above OpenBLAS's small-matrix limit, so whole and pieces take the same kernel.
    let (step, parts) = Parallel.split(max(m, n), grain: 64)
    let smallest = max(m, n) - (parts - 1) * step
    if parts < 2 || smallest * min(m, n) * k <= smallMatrixLimit {
        sgemmSerial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    if m >= n {
        Parallel.forRanges(m, grain: 64) { _, rows in
            let aBlock = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
            sgemmSerial(transA, transB, rows.count, n, k, alpha, aBlock, lda, b, ldb, beta,
                        c + rows.lowerBound * ldc, ldc)
        }
    } else {
        Parallel.forRanges(n, grain: 64) { _, cols in
            let bBlock = transB ? b + cols.lowerBound * ldb : b + cols.lowerBound
            sgemmSerial(transA, transB, m, cols.count, k, alpha, a, lda, bBlock, ldb, beta,
                        c + cols.lowerBound, ldc)
        }
    }
}

/// OpenBLAS's SkylakeX-family kernels (also picked on AMD Zen 4) send products with
/// m * n * k <= 100^3 to separate small-matrix kernels that round differently from the blocked
/// one; a split that crossed this line would make results depend on the thread count.
let smallMatrixLimit = 1_000_000

/// One OpenBLAS call on the calling thread (OpenBLAS is kept at one thread by `Parallel`).
@inline(__always)
public func sgemmSerial(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// What OpenBLAS reports about itself: the kernel it selected (e.g. "SkylakeX", "Haswell") and
/// its build configuration.
public enum BLASInfo {
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }
    public static var config: String {
        guard let text = openblas_get_config() else { return "unknown" }
        return String(cString: text)
    }
}

extension BLASInfo {
    /// OpenBLAS falls back to a generic SSE3 kernel ("Prescott") when its CPU table does not know
    /// the processor (new Xeons under some hypervisors), making every GEMM several times slower.
    /// Returns advice to print in that case, or nil.
    public static var kernelAdvice: String? {
        let generic: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine", "Northwood", "Banias"]
        guard generic.contains(coreName) else { return nil }
        return "note: OpenBLAS chose its generic \(coreName) kernel because it does not recognize this CPU; "
            + "GEMMs run several times slower. If the CPU has AVX2, set OPENBLAS_CORETYPE=Haswell "
            + "(or SkylakeX with AVX-512) in the environment."
    }
}
