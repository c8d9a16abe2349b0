import COpenBLAS
import Dispatch

/// elle's threading: one knob for every kernel.
///
/// OpenBLAS is always run single-threaded; elle splits both its own elementwise kernels and large
/// GEMMs into `threads` contiguous pieces. That way BLAS worker threads never compete with elle's
/// (no oversubscription, no BLAS threads spinning while elementwise work runs), and every output
/// element is always computed by the same code in the same order, so results are bit-identical
/// whatever the thread count (the data-parallel exactness tests rely on it).
public enum Parallel {
    nonisolated(unsafe) public private(set) static var threads: Int = 1

    /// Sets the thread count for elle's kernels and pins OpenBLAS to one thread.
    public static func configure(threads: Int) {
        precondition(threads >= 1, "thread count must be at least 1, got \(threads)")
        Parallel.threads = threads
        openblas_set_num_threads(1)
    }

    /// Splits `0..<count` into at most `threads` contiguous ranges whose boundaries are multiples
    /// of `grain` (except the end) and runs `body(worker, range)` for each, concurrently.
    /// `worker` is in `0..<threads` and indexes per-thread scratch. Runs inline when there is
    /// less than `minimum` items of work per extra thread.
    @inline(__always)
    public static func forRanges(
        _ count: Int, grain: Int = 1, minimum: Int = 1,
        _ body: (_ worker: Int, _ range: Range<Int>) -> Void
    ) {
        if count <= 0 { return }
        let units = (count + grain - 1) / grain
        let parts = min(threads, units, max(1, count / max(minimum, 1)))
        if parts <= 1 {
            body(0, 0..<count)
            return
        }
        let unitsPerPart = (units + parts - 1) / parts
        let step = unitsPerPart * grain
        let used = (count + step - 1) / step
        DispatchQueue.concurrentPerform(iterations: used) { part in
            let start = part * step
            body(part, start..<min(start + step, count))
        }
    }
}
