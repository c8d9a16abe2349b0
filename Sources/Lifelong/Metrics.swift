/// Per-domain validation perplexity after each stage: `values[t][i]` is domain i's perplexity
/// after stage t, for i <= t (spec section 7).
public struct PerplexityMatrix: Codable, Equatable, Sendable {
    public var domains: [String]
    public private(set) var values: [[Double]]

    public init(domains: [String]) {
        self.domains = domains
        values = []
    }

    /// Records the perplexities of domains 0...stage measured after `stage`.
    public mutating func record(stage: Int, perplexities: [Double]) {
        precondition(stage == values.count, "stages are recorded in order")
        precondition(perplexities.count == stage + 1, "one perplexity per seen domain")
        values.append(perplexities)
    }

    /// AP_t: mean perplexity over the domains seen by stage t.
    public func averagePerplexity(after t: Int) -> Double {
        values[t].reduce(0, +) / Double(values[t].count)
    }

    /// AP+_t: mean over i < t of (P[t][i] - P[i][i]), the average increase of perplexity on
    /// earlier domains since each was learned (forgetting); 0 after the first stage.
    public func averageIncrease(after t: Int) -> Double {
        guard t > 0 else { return 0 }
        return (0..<t).reduce(0.0) { $0 + values[t][$1] - values[$1][$1] } / Double(t)
    }

    /// A markdown table: a row per stage, a column per domain, then AP and AP+.
    public var markdown: String {
        var lines = ["| after stage | " + domains.joined(separator: " | ") + " | AP | AP+ |",
                     "|---|" + String(repeating: "---|", count: domains.count + 2)]
        for (t, row) in values.enumerated() {
            let cells = domains.indices.map { $0 < row.count ? String(format: "%.2f", row[$0]) : "" }
            lines.append("| \(t) \(domains[t]) | " + cells.joined(separator: " | ")
                         + String(format: " | %.2f | %.2f |", averagePerplexity(after: t), averageIncrease(after: t)))
        }
        return lines.joined(separator: "\n")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
