import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT ask a run to stop at the next update boundary, write a checkpoint and exit
/// cleanly (what a cluster's pre-emption or Ctrl-C should do). A second signal ends the process
/// at once. Under MPI the ranks agree on stopping (`TrainingLoop`), so they stop together.
public enum StopSignal {
    /// Installs the handlers (idempotent). SIGXFSZ (a write past the file-size limit) is
    /// ignored, so such a write fails with an error naming the file instead of killing the run.
    public static func install() {
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
        signal(SIGXFSZ, SIG_IGN)
    }

    public static var requested: Bool { StopSignalFlag.value.load(ordering: .relaxed) > 0 }

    /// For tests: forget an earlier request.
    public static func reset() { StopSignalFlag.value.store(0, ordering: .relaxed) }
}

private func handler(_ signal: Int32) {
    // Atomic add is async-signal-safe; write(2) is too.
    let previous = StopSignalFlag.add()
    if previous > 0 { _exit(128 + signal) }
    let message: StaticString = "\nelle: stop requested; finishing this update and writing a checkpoint (signal again to quit now)\n"
    _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
}

/// The flag behind `StopSignal`, reachable from the C signal handler.
enum StopSignalFlag {
    static let value = Atomic<Int>(0)
    static func add() -> Int { value.add(1, ordering: .relaxed).oldValue }
}
