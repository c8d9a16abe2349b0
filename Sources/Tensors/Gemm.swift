/// The one seam every matrix product goes through: row-major C = alpha op(A) op(B) + beta C,
/// op(A) of shape (m, k) and op(B) of shape (k, n) (`transA`/`transB`: stored transposed); A and
/// B are both float32 or both bf16; C and the accumulation are float32.
///
/// Which library computes a product is a fixed rule of its operands' precision and the CPU
/// (`GemmRules`), never timed at run time, so every rank and every resume computes with the same
/// kernels. Large products are cut into pieces run on elle's workers, each piece by one
/// single-threaded library call.
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, _ a: Operand, lda: Int, _ b: Operand, ldb: Int,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    switch (a, b) {
    case let (.fp32(a), .fp32(b)):
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
    case let (.bf16(a), .bf16(b)):
        if m == 0 || n == 0 { return }
        Profiler.record(Profiler.GemmShape(transA: transA, transB: transB, m: m, n: n, k: k, precision: .bf16))
        Profiler.measure(.gemm) {
            GemmBF16.tiled(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
    default:
        preconditionFailure("a product of a \(a.precision) and a \(b.precision) operand")
    }
}

/// Float32 operands: `Parallel.threads` blocks of rows of C (or of columns, when C is wider than
/// tall), each by single-threaded OpenBLAS. Block boundaries are multiples of 64 so OpenBLAS's
/// micro-kernel tiles, and hence the rounding of every element, do not depend on the thread
/// count; products whose blocks would be small (`smallMatrixLimit`) are not split.
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
    _ b: UnsafePointer<Float>, ldb: Int,
    beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    Profiler.record(Profiler.GemmShape(transA: transA, transB: transB, m: m, n: n, k: k, precision: .fp32))
    Profiler.measure(.gemm) {
        splitGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

/// One product on the calling thread, by the library `GemmRules` names (attention's per-head
/// products run this way inside elle's own parallel loop).
@inline(__always)
public func gemmSerial(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: Operand, _ lda: Int, _ b: Operand, _ ldb: Int,
    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    switch (a, b) {
    case let (.fp32(a), .fp32(b)):
        sgemmSerial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    case let (.bf16(a), .bf16(b)):
        GemmBF16.serial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    default:
        preconditionFailure("a product of a \(a.precision) and a \(b.precision) operand")
    }
}

/// The libraries behind `gemm`.
public enum GemmLibrary: String, Sendable {
    case openBLAS = "OpenBLAS"
    case oneDNN = "oneDNN"
    /// bf16 operands widened to float32 for OpenBLAS: exact products of the bf16 values, float32
    /// accumulation (subnormal operands kept); slower than float32 itself (the widening).
    case widenedOpenBLAS = "OpenBLAS on bf16 widened to float32"
}

/// Which library computes which product, as a table:
///
/// | operands | CPU                            | library                      | pieces                                  |
/// |----------|--------------------------------|------------------------------|-----------------------------------------|
/// | float32  | any                            | OpenBLAS `cblas_sgemm`       | one per thread, 64-aligned (`splitGemm`) |
/// | bf16     | AVX512_BF16 or AMX (oneDNN ISA) | oneDNN matmul, f32 results  | fixed tiles of the shape (`GemmBF16`)   |
/// | bf16     | anything else                  | widened to float32, OpenBLAS | the same tiles                          |
///
/// float32 stays on OpenBLAS (docs/PERFORMANCE.md, "bf16": oneDNN's float32 matmul against it
/// at the step's shapes).
public enum GemmRules {
    public static func library(for precision: Precision) -> GemmLibrary {
        switch precision {
        case .fp32: return .openBLAS
        case .bf16: return OneDNN.hasNativeBF16 ? .oneDNN : .widenedOpenBLAS
        }
    }

    /// "fp32 products (OpenBLAS)", "bf16 products (oneDNN)": the numbers and library of a run's
    /// products, for its summary line.
    public static func describe(_ precision: Precision) -> String {
        "\(precision) products (\(library(for: precision).rawValue))"
    }

    /// One line for the user when bf16 will be slower than float32 on this CPU, else nil.
    public static var bf16Advice: String? {
        if library(for: .bf16) == .oneDNN { return nil }
        return "note: this CPU has no AVX512_BF16 (oneDNN runs at \(OneDNN.isaName)); --precision bf16 widens each "
            + "product's bf16 operands to float32 for OpenBLAS, which is correct but slower than --precision fp32 here"
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
