import Communication
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Receives a run's metrics as they are written (metrics.jsonl is one sink; a TensorBoard
/// writer can be another). Called on rank 0 only.
public protocol MetricsSink: AnyObject {
    /// One record as metrics.jsonl gets it: every record has "step" (updates so far).
    func record(_ fields: [String: Any])
    /// A line worth keeping beside the curves (a growth, a stage boundary) at update `step`.
    func note(_ text: String, step: Int)
    /// The run continued from a checkpoint of update `step`: records after it are stale.
    func restarted(atStep step: Int)
}

extension MetricsSink {
    public func note(_ text: String, step: Int) {}
    public func restarted(atStep step: Int) {}
}

/// Appends JSON lines (keys sorted) to a run folder's metrics.jsonl. A resume from a checkpoint
/// older than the file's last records (the run crashed after it) first appends
/// `{"event": "restart", "step": S}`: the records above it with a step past S are stale.
public final class MetricsFile: MetricsSink {
    private let handle: FileHandle
    private let path: String

    public init(folder: RunFolder, append: Bool) throws {
        try FileManager.default.createDirectory(atPath: folder.path, withIntermediateDirectories: true)
        let path = folder.metricsPath
        if !append || !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw CheckpointError(path: path, "cannot be written") }
        handle.seekToEndOfFile()
        self.handle = handle
        self.path = path
    }

    public func restarted(atStep step: Int) {
        let lines = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n") ?? []
        let stale = lines.contains { line in
            let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return ((record?["step"] as? NSNumber)?.intValue ?? 0) > step
        }
        if stale { record(["event": "restart", "step": step]) }
    }

    public func record(_ fields: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        handle.write(data + Data("\n".utf8))
    }
}

/// What a run shows and writes (rank 0 only; on other ranks every call does nothing): log
/// lines; a progress line that redraws in place on a terminal and becomes plain lines in a file
/// or pipe; metrics records for every sink (metrics.jsonl first).
public final class RunOutput {
    public let enabled: Bool
    public private(set) var sinks: [MetricsSink] = []
    private let print: (String) -> Void
    private let terminal: Bool
    private var progressShown = false

    /// Output of a run in `folder` (metrics.jsonl appended to when `append`, e.g. on resume; no
    /// metrics file without a folder), with TensorBoard event files in `tensorboard` if given.
    public init(folder: RunFolder?, enabled: Bool, append: Bool, tensorboard: String? = nil,
                print: @escaping (String) -> Void = { Swift.print($0) }) throws {
        self.enabled = enabled
        self.print = print
        // Under mpirun a rank's stdout is a pseudo-terminal even when mpirun's own output goes to
        // a file, so redrawing is only for a plain run on a terminal.
        terminal = isatty(STDOUT_FILENO) != 0 && !MPICommunicator.launchedByMPI
        guard enabled else { return }
        if let folder { sinks.append(try MetricsFile(folder: folder, append: append)) }
        if let tensorboard { sinks.append(try TensorBoardSink(folder: tensorboard, resumed: append)) }
    }

    /// Adds a sink (rank 0's; ignored elsewhere).
    public func add(_ sink: MetricsSink) {
        if enabled { sinks.append(sink) }
    }

    public func log(_ line: String) {
        guard enabled else { return }
        if progressShown { fputs("\n", stdout); progressShown = false }
        print(line)
        fflush(stdout)
    }

    /// A progress line: redrawn in place on a terminal (kept when `final`), printed otherwise.
    public func progress(_ line: String, final: Bool) {
        guard enabled else { return }
        if terminal {
            fputs("\r\u{1B}[2K" + line, stdout)
            progressShown = !final
            if final { fputs("\n", stdout) }
            fflush(stdout)
        } else {
            print(line)
            fflush(stdout)
        }
    }

    /// A metrics record for every sink.
    public func metric(_ fields: [String: Any]) {
        guard enabled else { return }
        for sink in sinks { sink.record(fields) }
    }

    /// A log line that every sink also keeps as a note at update `step`.
    public func note(_ line: String, step: Int) {
        log(line)
        guard enabled else { return }
        for sink in sinks { sink.note(line, step: step) }
    }

    /// Tells every sink that the run continued from update `step`.
    public func restarted(atStep step: Int) {
        guard enabled else { return }
        for sink in sinks { sink.restarted(atStep: step) }
    }
}
