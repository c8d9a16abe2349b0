import Foundation
import Training

extension LifelongRun {
    /// report.md (perplexity matrix, AP, AP+, growth effects) and perplexity.json in the run
    /// folder, and the matrix in the log (rank 0).
    func writeReport() {
        let matrix = state.matrix, effects = state.growthEffects, flops = state.flops
        guard communicator.isRoot, !matrix.values.isEmpty else { return }
        let folder = RunFolder(out)
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
        try? report.write(toFile: folder.file("report.md"), atomically: true, encoding: .utf8)
        if let data = try? JSONEncoder().encode(matrix) {
            try? data.write(to: URL(fileURLWithPath: folder.file("perplexity.json")))
        }
        output.log("")
        output.log(matrix.markdown)
        output.log(String(format: "AP %.2f | AP+ %.2f | training FLOPs %.3e | report %@", matrix.averagePerplexity(after: last),
                   matrix.averageIncrease(after: last), flops, folder.file("report.md")))
    }
}
