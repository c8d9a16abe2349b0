import Communication
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What a lifelong run shows and writes (rank 0 only): log lines; a progress line that redraws
/// in place on a terminal and becomes plain lines in a file or pipe; metrics.jsonl; and at the end
/// report.md (perplexity matrix, AP, AP+, growth effects) and perplexity.json.
final class RunOutput {
    let folder: String
    let enabled: Bool
    private let print: (String) -> Void
    private let terminal: Bool
    private var metrics: FileHandle?
    private var progressShown = false

    init(folder: String, enabled: Bool, append: Bool, print: @escaping (String) -> Void) {
        self.folder = folder
        self.enabled = enabled
        self.print = print
        // Under mpirun a rank's stdout is a pseudo-terminal even when mpirun's own output goes to
        // a file, so redrawing is only for a plain run on a terminal.
        terminal = isatty(STDOUT_FILENO) != 0 && !MPICommunicator.launchedByMPI
        guard enabled else { return }
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = (folder as NSString).appendingPathComponent("metrics.jsonl")
        if !append || !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        metrics = FileHandle(forWritingAtPath: path)
        metrics?.seekToEndOfFile()
    }

    func log(_ line: String) {
        guard enabled else { return }
        if progressShown { fputs("\n", stdout); progressShown = false }
        print(line)
        fflush(stdout)
    }

    /// A progress line: redrawn in place on a terminal (kept when `final`), printed otherwise.
    func progress(_ line: String, final: Bool) {
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

    func metric(_ fields: [String: Any]) {
        guard enabled, let metrics,
              let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        metrics.write(data + Data("\n".utf8))
    }

    func writeReport(matrix: PerplexityMatrix, effects: [LifelongState.GrowthEffect], flops: Double, plan: StagePlan) {
        guard enabled, !matrix.values.isEmpty else { return }
        let last = matrix.values.count - 1
        var lines = ["# \(plan.name): validation perplexity", "",
                     "Rows: after each stage; columns: every domain seen so far. AP = mean perplexity over seen",
                     "domains; AP+ = mean increase on earlier domains since each was learned (forgetting).", "",
                     matrix.markdown, "",
                     String(format: "Final: AP %.2f, AP+ %.2f; training FLOPs %.3e.", matrix.averagePerplexity(after: last),
                            matrix.averageIncrease(after: last), flops)]
        if !effects.isEmpty {
            lines += ["", "## Growth", "", "Perplexity of the domains seen before each growth: before it, right after it, and after the warmup.", ""]
            for e in effects {
                let names = matrix.domains.prefix(e.before.count)
                for (k, name) in names.enumerated() {
                    let warm = e.afterWarmup.map { String(format: "%.2f", $0[k]) } ?? "-"
                    lines.append(String(format: "- stage %d, %@: %.2f -> %.2f -> %@", e.stage, name, e.before[k], e.afterGrowth[k], warm))
                }
            }
        }
        let report = lines.joined(separator: "\n") + "\n"
        try? report.write(toFile: (folder as NSString).appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
        if let data = try? JSONEncoder().encode(matrix) {
            try? data.write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("perplexity.json")))
        }
        log("")
        log(matrix.markdown)
        log(String(format: "AP %.2f | AP+ %.2f | training FLOPs %.3e | report %@", matrix.averagePerplexity(after: last),
                   matrix.averageIncrease(after: last), flops, (folder as NSString).appendingPathComponent("report.md")))
    }
}
