import Foundation
import TestSupport
import XCTest

/// A lifelong plan with `growOnPlateau` as real jobs: the policy grows in the middle of a stage,
/// the stage keeps its FLOP budget, and 1 rank x 2 micro-batches equal 2 ranks x 1 stopped right
/// after the policy's growth and in the middle of its ramp, then resumed.
final class PlateauLifelongJobTests: XCTestCase {
    func writePlan(accumulation: Int) throws -> String {
        let path = temporaryFolder() + "/plan.yaml"
        try """
            name: plateau-test
            model: {layers: 1, width: 32, heads: 2, context: 32, dropout: 0.1}
            data: \(LifelongJobTests.data)
            seed: 3
            growOnPlateau:
              ladder: [{layers: 2, width: 32, heads: 2, ramp: 10}, {layers: 2, width: 64, heads: 4, ramp: 10}]
              window: 3
            defaults:
              batch: 4
              seq: 32
              accumulation: \(accumulation)
              lr: 3.0e-3
              replay: {ratio: 0.25}
              evalEvery: 10
              evalBatches: 3
              logEvery: 10
            stages:
              - domain: literature
                steps: 120
              - domain: legal
                steps: 120
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func job(_ ranks: Int, _ arguments: [String]) throws -> String {
        let result = ranks == 1 ? try runProcess(elleExecutable, arguments) : try MPIJob.run(ranks: ranks, elleExecutable, arguments)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        return result.stdout
    }

    /// The policy's records, evaluations and stage ends (progress lines average windows that a
    /// stop splits).
    func decisions(_ folder: String) throws -> [String] {
        try JobRecords.metrics(folder).filter { !$0.contains("\"loss\"") }.map { line in
            var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            record["seconds"] = nil  // the growth's time
            return String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    func testPolicyGrowsMidStageAlikeOnEveryRankAndResumesBitExactly() throws {
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let a = try job(1, ["train", "--config", try writePlan(accumulation: 2), "--out", straight, "--threads", "1"])
        let grew = try XCTUnwrap(a.split(separator: "\n").first { $0.contains("grew on plateau") }, a)
        XCTAssertTrue(grew.contains("stage 1/2 update"), String(grew))
        let records = try decisions(straight)
        let growth = try XCTUnwrap(records.first { $0.contains("\"policy\":\"plateau\"") })
        let step = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(growth.utf8)) as? [String: Any])?["step"] as? Int)
        XCTAssertTrue(records.contains { $0.contains("plateau_check") && $0.contains("\"decision\":\"grow\"") && $0.contains("\"step\":\(step),") })
        // The first stage keeps its budget of 120 updates of the 1/32 model: the grown updates cost more, so fewer run.
        let stageEnd = try XCTUnwrap(records.first { $0.contains("stage_end") })
        let end = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(stageEnd.utf8)) as? [String: Any])?["step"] as? Int)
        XCTAssertTrue((step + 1)..<120 ~= end, "stage 0 ended at update \(end)")

        let plan = try writePlan(accumulation: 1)
        _ = try job(2, ["train", "--config", plan, "--out", split, "--threads", "1", "--stop-after", "\(step)"])
        let resumed = try job(2, ["train", "--config", plan, "--out", split, "--threads", "1", "--resume", "--stop-after", "\(step + 5)"])
        XCTAssertFalse(resumed.contains("grew on plateau"), "the growth was in the checkpoint: " + resumed)
        let b = try job(2, ["train", "--config", plan, "--out", split, "--threads", "1", "--resume"])
        XCTAssertEqual(JobRecords.finalHash(b), try XCTUnwrap(JobRecords.finalHash(a)))
        XCTAssertEqual(try decisions(split), records)
    }
}
