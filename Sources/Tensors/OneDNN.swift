import CDNNL
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// oneDNN (Debian's libdnnl 2.6) as the library of bf16 products: its matmul primitive with bf16
/// operands and float32 accumulation and results, which reaches about twice OpenBLAS's float32
/// rate on CPUs with AVX512_BF16 (`brg:avx512_core_bf16`).
///
/// Threading: every call runs single-threaded on the thread that makes it. `gemm` cuts a product
/// into tiles that depend on its shape only and hands them to elle's own workers (`Parallel`), as
/// it does for OpenBLAS; oneDNN's OpenMP runtime (GNU libgomp) is held at one thread in each
/// thread that calls it, so it never starts a thread team that would spin against elle's
/// workers, and the kernel oneDNN picks for a tile is the same whatever the thread count.
///
/// Primitives are made on first use of a shape and cached per thread (each thread also has its
/// own stream), so a training step creates nothing after its first pass.
public enum OneDNN {
    /// The CPU instruction set oneDNN dispatches to (`ONEDNN_MAX_CPU_ISA` can lower it).
    public static var isaName: String {
        let isa = dnnl_get_effective_cpu_isa().rawValue
        let names: [(UInt32, String)] = [
            (dnnl_cpu_isa_avx512_core_amx.rawValue, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16.rawValue, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_vnni.rawValue, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core.rawValue, "avx512_core"),
            (dnnl_cpu_isa_avx2_vnni.rawValue, "avx2_vnni"), (dnnl_cpu_isa_avx2.rawValue, "avx2"), (dnnl_cpu_isa_avx.rawValue, "avx"),
            (dnnl_cpu_isa_sse41.rawValue, "sse41"),
        ]
        return names.first { isa & $0.0 == $0.0 }?.1 ?? "unknown (\(isa))"
    }

    /// Whether oneDNN has native bf16 kernels here (AVX512_BF16 or AMX). Without them oneDNN 2.6
    /// either has no bf16 matmul at all (AVX2) or emulates it several times slower than float32
    /// (AVX-512 without BF16), so `gemm` widens bf16 operands to float32 for OpenBLAS instead.
    public static let hasNativeBF16: Bool = {
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return dnnl_get_effective_cpu_isa().rawValue & bf16 == bf16
    }()

    public static var version: String {
        guard let v = dnnl_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    /// The implementations of every primitive made so far in this process, sorted.
    public static var implementations: [String] { seenImplementations.withLock { $0.sorted() } }

    /// The one CPU engine.
    static let engine: dnnl_engine_t = {
        var engine: dnnl_engine_t?
        let status = dnnl_engine_create(&engine, dnnl_cpu, 0)
        precondition(status == dnnl_success && engine != nil, "oneDNN: cannot create a CPU engine (status \(status.rawValue))")
        return engine!
    }()

    private static let seenImplementations = Mutex<Set<String>>([])

    /// The product a cached primitive computes.
    struct Key: Hashable {
        var transA, transB: Bool
        var m, n, k, lda, ldb, ldc: Int
        var alpha, beta: Float
    }

    /// C (m x n, row stride ldc) = alpha op(A) op(B) + beta C with bf16 A and B, on this thread.
    static func matmul(_ key: Key, _ a: UnsafePointer<BF16>, _ b: UnsafePointer<BF16>, _ c: UnsafeMutablePointer<Float>) {
        let cache = ThreadCache.current
        let primitive = cache.primitives[key] ?? cache.make(key)
        let status = withUnsafePointer(to: &primitive.matmul) { elle_matmul_run($0, cache.stream, a, b, c) }
        precondition(status == dnnl_success, "oneDNN: matmul \(key) failed (status \(status.rawValue))")
    }

    /// One primitive and its memory objects.
    final class Primitive {
        var matmul = elle_matmul()
        deinit { elle_matmul_destroy(&matmul) }
    }

    /// A thread's stream and primitives. Made on the thread's first product, which is also where
    /// the thread's OpenMP team size is set to 1.
    final class ThreadCache {
        let stream: dnnl_stream_t
        var primitives: [Key: Primitive] = [:]

        private static let perThread = ThreadLocal { ThreadCache() }
        static var current: ThreadCache { perThread.value }

        private init() {
            OneDNN.holdOpenMPToOneThread()
            var stream: dnnl_stream_t?
            let status = dnnl_stream_create(&stream, OneDNN.engine, dnnl_stream_default_flags.rawValue)
            precondition(status == dnnl_success && stream != nil, "oneDNN: cannot create a stream (status \(status.rawValue))")
            self.stream = stream!
        }

        deinit { dnnl_stream_destroy(stream) }

        func make(_ key: Key) -> Primitive {
            let primitive = Primitive()
            // Row-major: a transposed operand is read with row stride 1 and column stride ld.
            let status = elle_matmul_create(
                &primitive.matmul, OneDNN.engine, dnnl_bf16, Int64(key.m), Int64(key.n), Int64(key.k),
                Int64(key.transA ? 1 : key.lda), Int64(key.transA ? key.lda : 1),
                Int64(key.transB ? 1 : key.ldb), Int64(key.transB ? key.ldb : 1),
                Int64(key.ldc), key.alpha, key.beta)
            precondition(status == dnnl_success, "oneDNN: cannot make a bf16 matmul for \(key) (status \(status.rawValue))")
            let name = withUnsafeBytes(of: primitive.matmul.implementation) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            _ = OneDNN.seenImplementations.withLock { $0.insert(name) }
            primitives[key] = primitive
            return primitive
        }
    }

    /// Sets this thread's OpenMP team size (GNU libgomp keeps it per thread) to 1, so oneDNN runs
    /// its kernels inline here. libgomp is loaded with libdnnl; its symbol is looked up at run
    /// time because Debian ships no link-time libgomp.so outside GCC's private directory.
    static func holdOpenMPToOneThread() {
        guard let set = ompSetNumThreads else {
            fatalError("oneDNN: omp_set_num_threads not found; elle expects Debian's OpenMP build of libdnnl")
        }
        set(1)
    }

    private static let ompSetNumThreads: (@convention(c) (Int32) -> Void)? = {
        guard let symbol = dlsym(nil, "omp_set_num_threads") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32) -> Void).self)
    }()
}
