import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A subprocess whose combined output can be watched while it runs.
public final class LiveProcess: @unchecked Sendable {
    private let process = Process()
    private let lock = NSLock()
    private var collected = Data()

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            guard let self else { return }
            self.lock.lock()
            self.collected.append(chunk)
            self.lock.unlock()
        }
        try process.run()
    }

    public var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    public var status: Int32 { process.terminationStatus }
    public var pid: pid_t { process.processIdentifier }

    /// The first capture group of `pattern` once the output matches it (nil after `timeout` s).
    public func waitFor(_ pattern: String, timeout: Double) -> String? {
        let regex = try! NSRegularExpression(pattern: pattern)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = output
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) {
                let range = match.numberOfRanges > 1 ? match.range(at: 1) : match.range
                return Range(range, in: text).map { String(text[$0]) } ?? ""
            }
            if !process.isRunning { return nil }
            usleep(50_000)
        }
        return nil
    }

    public func waitForExit(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { return false }
        process.waitUntilExit()
        usleep(100_000)  // let the last output arrive
        return true
    }

    /// Ends the job if it is still running (mpirun passes the signal on to its ranks).
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        if !waitForExit(timeout: 10) { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Real MPI jobs for tests: `mpirun` as a subprocess (MPI_Init runs once per process, so the
/// test runner itself never initializes MPI), one OpenMP thread per rank so oneDNN or OpenBLAS
/// threads never compete with the ranks on a small machine.
public enum MPIJob {
    /// The environment every test job runs with.
    public static let environment = ["OMP_NUM_THREADS": "1"]

    /// The command line of `ranks` ranks of `executable arguments` (as root, Open MPI wants the
    /// flag; more ranks than cores need --oversubscribe).
    public static func command(ranks: Int, _ executable: String, _ arguments: [String], mpirunOptions: [String] = []) -> [String] {
        ["mpirun", "--allow-run-as-root", "--oversubscribe"] + mpirunOptions + ["-n", "\(ranks)", executable] + arguments
    }

    /// Runs the job to completion: (exit status, standard output, standard error).
    @discardableResult
    public static func run(ranks: Int, _ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess("/usr/bin/env", command(ranks: ranks, executable, arguments), environment: environment)
    }
}

/// What the job tests compare: a run's metrics without timings, its final hash.
public enum JobRecords {
    /// A tiny GPT on the bundled sample, as the job tests train it.
    public static func tinyRun(out: String, steps: Int) -> [String] {
        ["train", "--data", sampleDataPath(), "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
         "--seq", "32", "--batch", "4", "--steps", "\(steps)", "--log-every", "1", "--threads", "1", "--seed", "3"]
    }

    /// metrics.jsonl records without the timing fields (JSON numbers print shortest round-trip, so
    /// equal text means equal bits).
    public static func metrics(_ folder: String) throws -> [String] {
        let text = try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            guard var record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return String(line) }
            for key in ["tokens_per_second", "mfu"] { record[key] = nil }
            return String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    /// The final `parameters xxh64 H` line's hash.
    public static func finalHash(_ log: String) -> String? {
        log.split(separator: "\n").first { $0.hasPrefix("parameters xxh64") }.map { String($0.split(separator: " ")[2].prefix(16)) }
    }
}
