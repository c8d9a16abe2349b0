import CMPI
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A helper thread that keeps started collectives moving while the training thread computes.
///
/// MPI moves a large message only inside MPI calls: Open MPI has no progress thread of its own
/// for TCP or shared memory, and its non-blocking all-reduce advances a round only when tested.
/// Measured over TCP at 1 Gbit/s (two network namespaces), a 24 MB all-reduce tested every 50 ms
/// took 2.5-3x its time alone; tested every 1-5 ms it ran at full speed. Backward's operations
/// last tens to hundreds of milliseconds (the output-projection GEMMs alone), so testing between
/// them is too coarse. This thread tests every request handed to it every `interval` while it has
/// any and sleeps on a condition variable otherwise. It never blocks inside MPI (Open MPI's
/// blocking calls busy-wait and would take a core from the computation); the shim serializes its
/// calls with the training thread's (MPI_THREAD_SERIALIZED). The training thread still finishes
/// each collective with `PendingCollective.wait()`, under the watchdog.
final class BackgroundProgress: @unchecked Sendable {
    /// Sleep between two rounds of tests.
    static let interval: useconds_t = 500

    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var requests: [MPIRequest] = []
    private var thread: pthread_t?
    private var stopping = false

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
    }

    deinit {
        stop()
        pthread_cond_destroy(&wake)
        pthread_mutex_destroy(&mutex)
    }

    /// Tests `request` in the background until it completes (or fails: its `wait()` then reports
    /// the error on the training thread).
    func add(_ request: MPIRequest) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if stopping { return }
        requests.append(request)
        if thread == nil { startThread() }
        pthread_cond_signal(&wake)
    }

    /// Stops and joins the thread (before MPI_Finalize). Requests still pending stay with their
    /// owners.
    func stop() {
        pthread_mutex_lock(&mutex)
        stopping = true
        requests = []
        pthread_cond_signal(&wake)
        let running = thread
        thread = nil
        pthread_mutex_unlock(&mutex)
        if let running { pthread_join(running, nil) }
    }

    private func startThread() {
        let context = Unmanaged.passRetained(self).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { raw in
            let progress = Unmanaged<BackgroundProgress>.fromOpaque(raw!).takeRetainedValue()
            progress.run()
            return nil
        }, context)
        precondition(rc == 0, "cannot start the MPI progress thread (pthread_create: \(rc))")
        thread = handle
    }

    private func run() {
        pthread_mutex_lock(&mutex)
        while !stopping {
            if requests.isEmpty {
                pthread_cond_wait(&wake, &mutex)
                continue
            }
            let current = requests
            pthread_mutex_unlock(&mutex)
            let finished = current.filter { (try? $0.test()) ?? true }
            pthread_mutex_lock(&mutex)
            if !finished.isEmpty {
                requests.removeAll { request in finished.contains { $0 === request } }
            }
            if requests.isEmpty || stopping { continue }
            pthread_mutex_unlock(&mutex)
            usleep(BackgroundProgress.interval)
            pthread_mutex_lock(&mutex)
        }
        pthread_mutex_unlock(&mutex)
    }
}
