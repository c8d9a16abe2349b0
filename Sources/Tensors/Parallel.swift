import COpenBLAS
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// elle's threading: one knob for every kernel.
///
/// OpenBLAS is always run single-threaded; elle splits both its own elementwise kernels and large
/// GEMMs into `threads` contiguous pieces. That way BLAS worker threads never compete with elle's
/// (no oversubscription, no BLAS threads spinning while elementwise work runs), and every output
/// element is always computed by the same code in the same order, so results are bit-identical
/// whatever the thread count (the data-parallel exactness tests rely on it).
///
/// The pieces run on a `WorkerPool` of persistent threads that spin briefly between parallel
/// regions, so a step's hundreds of short regions start without a sleeping thread's wake-up.
public enum Parallel {
    nonisolated(unsafe) public private(set) static var threads: Int = 1
    nonisolated(unsafe) private static var pool: WorkerPool?

    /// Sets the thread count for elle's kernels and pins OpenBLAS to one thread.
    public static func configure(threads: Int) {
        precondition(threads >= 1, "thread count must be at least 1, got \(threads)")
        openblas_set_num_threads(1)
        if threads == Parallel.threads { return }
        pool?.shutdown()
        pool = nil
        Parallel.threads = threads
        pool = threads > 1 ? WorkerPool(threads: threads) : nil
    }

    /// Splits `0..<count` into at most `threads` contiguous ranges whose boundaries are multiples
    /// of `grain` (except the end) and runs `body(worker, range)` for each, concurrently.
    /// `worker` is in `0..<threads` and indexes per-thread scratch. Runs inline when there is
    /// less than `minimum` items of work per extra thread, or when called from inside another
    /// parallel region.
    @inline(__always)
    public static func forRanges(
        _ count: Int, grain: Int = 1, minimum: Int = 1,
        _ body: (_ worker: Int, _ range: Range<Int>) -> Void
    ) {
        if count <= 0 { return }
        let (step, used) = split(count, grain: grain, minimum: minimum)
        guard used > 1, let pool else {
            body(0, 0..<count)
            return
        }
        pool.run(parts: used) { part in
            let start = part * step
            body(part, start..<min(start + step, count))
        }
    }
}

extension Parallel {
    /// How `forRanges` cuts `0..<count`: pieces of `step` items (the last one shorter), `parts`
    /// of them; 1 part means it runs inline.
    @inline(__always)
    public static func split(_ count: Int, grain: Int = 1, minimum: Int = 1) -> (step: Int, parts: Int) {
        if count <= 0 { return (0, 0) }
        let units = (count + grain - 1) / grain
        let parts = min(threads, units, max(1, count / max(minimum, 1)))
        if parts <= 1 || pool == nil { return (count, 1) }
        let step = ((units + parts - 1) / parts) * grain
        return (step, (count + step - 1) / step)
    }
}

/// Persistent worker threads for `Parallel`. The calling thread runs part 0 itself; worker i
/// runs part i. Between regions a worker spins on a generation counter for about
/// `spinSeconds` (yielding the core now and then, in case threads outnumber cores), then
/// sleeps on a condition variable, so an idle process (waiting on MPI, I/O) does not burn its
/// cores. A region started while another is running (a nested call, or a
/// second thread) runs inline on its caller.
final class WorkerPool: @unchecked Sendable {
    let threads: Int
    /// How long an idle worker spins before it sleeps.
    static let spinSeconds = 0.002

    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    /// The current region's body and part count, published by `generation`'s release.
    private var body: UnsafeRawPointer?
    private var parts = 0
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var workers: [pthread_t] = []

    init(threads: Int) {
        self.threads = threads
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        for index in 1..<threads {
            // Each worker holds the pool strongly until `shutdown` has joined it.
            let context = Unmanaged.passRetained(WorkerContext(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                context.pool.work(index: context.index)
                return nil
            }, context)
            precondition(rc == 0, "cannot start a worker thread (pthread_create: \(rc))")
            workers.append(thread)
        }
    }

    /// Stops and joins the workers; the pool must not be used afterwards.
    func shutdown() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(&mutex)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
        for thread in workers { pthread_join(thread, nil) }
        workers = []
    }

    deinit {
        pthread_cond_destroy(&wake)
        pthread_mutex_destroy(&mutex)
    }

    private final class WorkerContext {
        let pool: WorkerPool
        let index: Int
        init(pool: WorkerPool, index: Int) { self.pool = pool; self.index = index }
    }

    /// Runs body(0..<parts), part 0 on the caller, and returns when all parts are done.
    func run(parts: Int, _ body: (Int) -> Void) {
        guard parts > 1, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for part in 0..<parts { body(part) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafePointer(to: &closure) { pointer in
                self.body = UnsafeRawPointer(pointer)
                self.parts = parts
                pending.store(parts - 1, ordering: .relaxed)
                generation.add(1, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    pthread_mutex_lock(&mutex)
                    pthread_cond_broadcast(&wake)
                    pthread_mutex_unlock(&mutex)
                }
                escapable(0)
                var spins = 0
                while pending.load(ordering: .acquiring) > 0 {
                    spins += 1
                    if spins & 127 == 0 { sched_yield() }  // let a descheduled worker run
                }
                self.body = nil
            }
        }
        busy.store(false, ordering: .releasing)
    }

    private func work(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            var deadline: UInt64 = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins & 127 != 0 { continue }
                // With more threads than free cores, spinning would hold a core that the thread
                // this one waits for needs: yield it now and then.
                sched_yield()
                if spins & 1023 != 0 { continue }
                let now = DispatchTime.now().uptimeNanoseconds
                if deadline == 0 {
                    deadline = now + UInt64(WorkerPool.spinSeconds * 1e9)
                } else if now > deadline {
                    sleep(until: seen)
                }
            }
            seen = generation.load(ordering: .acquiring)
            if stopping.load(ordering: .acquiring) { return }
            if index < parts, let body {
                body.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                pending.subtract(1, ordering: .releasing)
            }
        }
    }

    private func sleep(until seen: Int) {
        pthread_mutex_lock(&mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while generation.load(ordering: .sequentiallyConsistent) == seen {
            pthread_cond_wait(&wake, &mutex)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(&mutex)
    }
}
