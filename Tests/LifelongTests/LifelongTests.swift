import Lifelong
import XCTest

final class ReplayTests: XCTestCase {
    /// Over 1000 updates of 8 micro-batches at ratio 0.1 the replayed share is within 2 points
    /// of 10%, the replayed slots are the last ones, and the decision depends only on the seed
    /// (what every rank computes is identical).
    func testReplayShareAndDeterminism() {
        var replayed = 0
        for update in 0..<1000 {
            let d = ReplayScheduler.decide(microBatches: 8, ratio: 0.1, weights: [1, 1, 1], seed: 5, stage: 3, update: update)
            let again = ReplayScheduler.decide(microBatches: 8, ratio: 0.1, weights: [1, 1, 1], seed: 5, stage: 3, update: update)
            XCTAssertEqual(d, again)
            replayed += d.replayed
            if let first = d.sources.firstIndex(where: { $0 != nil }) {
                XCTAssertTrue(d.sources[first...].allSatisfy { $0 != nil }, "replay fills the last slots")
            }
        }
        XCTAssertEqual(Double(replayed) / 8000, 0.1, accuracy: 0.02)
    }

    func testDomainChoiceFollowsWeights() {
        var counts = [0, 0]
        for update in 0..<4000 {
            for case let j? in ReplayScheduler.decide(microBatches: 10, ratio: 0.5, weights: [3, 1], seed: 1, stage: 1, update: update).sources {
                counts[j] += 1
            }
        }
        XCTAssertEqual(Double(counts[0]) / Double(counts[0] + counts[1]), 0.75, accuracy: 0.02)
    }

    func testNoReplayWithoutOldDomains() {
        XCTAssertEqual(ReplayScheduler.decide(microBatches: 4, ratio: 0.5, weights: [], seed: 1, stage: 0, update: 0).replayed, 0)
    }

    /// A worked example of the adaptive rule.
    func testAdaptiveWeightsWorkedExample() {
        var w = AdaptiveReplayWeights(domains: 3)
        // First refresh: no previous losses, every rate is 1.
        w.refresh(validLosses: [4.0, 5.0, 6.0], generous: true)
        XCTAssertEqual(w.weights, [1, 1, 1])
        // Domain 0 drops 0.5 over 1000 tokens (5e-4), domain 1 rises 0.2 over 500 tokens
        // (-4e-4 -> max = 5e-4 in the first half), domain 2 got no replay (keeps its weight).
        w.recordReplay(domain: 0, tokens: 1000)
        w.recordReplay(domain: 1, tokens: 500)
        w.refresh(validLosses: [3.5, 5.2, 5.9], generous: true)
        XCTAssertEqual(w.weights[0], 5e-4, accuracy: 1e-12)
        XCTAssertEqual(w.weights[1], 5e-4, accuracy: 1e-12)
        XCTAssertEqual(w.weights[2], 1)
        // Second half of the stage: a rising loss gets weight 0, floored at 1e-9.
        w.recordReplay(domain: 0, tokens: 2000)
        w.recordReplay(domain: 1, tokens: 100)
        w.recordReplay(domain: 2, tokens: 100)
        w.refresh(validLosses: [3.3, 5.3, 5.8], generous: false)
        XCTAssertEqual(w.weights[0], 1e-4, accuracy: 1e-12)
        XCTAssertEqual(w.weights[1], 1e-9)
        // Domain 2's previous loss was recorded at the first refresh (6.0): (6.0 - 5.8) / 100.
        XCTAssertEqual(w.weights[2], 2e-3, accuracy: 1e-12)
        w.addDomain()
        XCTAssertEqual(w.weights.count, 4)
        XCTAssertEqual(w.weights[3], 1)
    }
}

final class MetricsTests: XCTestCase {
    /// AP and AP+ of a worked 3-stage example.
    func testAveragePerplexityAndIncrease() {
        var m = PerplexityMatrix(domains: ["a", "b", "c"])
        m.record(stage: 0, perplexities: [10])
        m.record(stage: 1, perplexities: [12, 20])
        m.record(stage: 2, perplexities: [13, 22, 30])
        XCTAssertEqual(m.averagePerplexity(after: 0), 10)
        XCTAssertEqual(m.averageIncrease(after: 0), 0)
        XCTAssertEqual(m.averagePerplexity(after: 1), 16)
        XCTAssertEqual(m.averageIncrease(after: 1), 2)          // 12 - 10
        XCTAssertEqual(m.averagePerplexity(after: 2), 65.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(m.averageIncrease(after: 2), 2.5)        // ((13 - 10) + (22 - 20)) / 2
        XCTAssertTrue(m.markdown.contains("| 2 c | 13.00 | 22.00 | 30.00 | 21.67 | 2.50 |"), m.markdown)
    }
}
