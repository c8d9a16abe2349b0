import COpenBLAS

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
