import Foundation
import Model
import TestSupport
import Training
import XCTest

/// The plateau policy (`PlateauPolicy`, `elle train --grow-on-plateau`): its rule on curves whose
/// answer is known, and under `mpirun` the same decisions on 1 rank x 2 micro-batches and on 2 ranks
/// x 1, with a bit-exact resume right after a policy-triggered growth and in the middle of its ramp.
final class PlateauPolicyTests: XCTestCase {
    typealias Point = PlateauPolicy.Point

    func policy(_ loss: (Double) -> Double, checks: Int, window: Int = 4) -> PlateauPolicy {
        var policy = PlateauPolicy(ladder: [GrowthPlan(layers: 2, width: 32, heads: 2)], window: window, flopsPerScheduleStep: 1e9)
        policy.points = (1...checks).map { i in
            let flops = 1e10 * Double(i)
            return Point(step: 10 * i, flops: flops, loss: Float(loss(flops)))
        }
        return policy
    }

    /// A loss linear in ln F never triggers (the grown model could only match the same slope at r
    /// times the cost); a curve that saturates triggers once its slope falls below 1/r of the
    /// first window's, later for a costlier growth; no decision before two windows; a reference
    /// window that did not fall at all triggers.
    func testTheRuleGrowsWhenTheSlopeFallsBelowTheCostRatio() {
        let logLinear = policy({ 6 - 0.5 * log($0 / 1e9) }, checks: 40)
        XCTAssertEqual(logLinear.decide(costRatio: 1.5).grow, false)
        XCTAssertEqual(logLinear.decide(costRatio: 1.5).currentSlope ?? 0, -0.5, accuracy: 1e-4)
        XCTAssertNil(policy({ 6 - log($0) }, checks: 7).decide(costRatio: 2).referenceSlope)

        // L = 3 + 3 exp(-F / 1e11): slope -3 (F / 1e11) exp(-F / 1e11) per ln F; steep at first, then flat.
        let saturating = { (f: Double) in 3 + 3 * exp(-f / 1e11) }
        func firstGrowth(costRatio: Double) -> Int? {
            (8...60).first { policy(saturating, checks: $0).decide(costRatio: costRatio).grow }
        }
        let cheap = try? XCTUnwrap(firstGrowth(costRatio: 1.5)), dear = try? XCTUnwrap(firstGrowth(costRatio: 4))
        XCTAssertNotNil(cheap)
        XCTAssertNotNil(dear)
        if let cheap, let dear { XCTAssertLessThan(cheap, dear, "a costlier growth should wait longer") }
        // The rule by hand at its first firing: the last window's slope above the first's / r.
        if let cheap {
            let p = policy(saturating, checks: cheap)
            let check = p.decide(costRatio: 1.5)
            XCTAssertGreaterThan(check.currentSlope!, check.referenceSlope! / 1.5)
            let before = policy(saturating, checks: cheap - 1).decide(costRatio: 1.5)
            XCTAssertLessThanOrEqual(before.currentSlope!, before.referenceSlope! / 1.5)
        }
        XCTAssertTrue(policy({ _ in 4 }, checks: 8).decide(costRatio: 3).grow, "a flat reference window grows")
    }

    func runJob(_ ranks: Int, _ arguments: [String]) throws -> String {
        let result = ranks == 1 ? try runProcess(elleExecutable, arguments) : try MPIJob.run(ranks: ranks, elleExecutable, arguments)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        return result.stdout
    }

    /// 1 rank x 2 micro-batches against 2 ranks x 1 (dropout on), the 2-rank run stopped right after
    /// the policy's growth (update 120 here) and again in the middle of the 10-update ramp, then
    /// resumed: every check's inputs and decision, every loss and the final parameters are the
    /// same bits, and the run ends at the FLOP budget, not at 200 updates.
    func testPolicyDecidesAlikeOnEveryRankAndResumesBitExactly() throws {
        let folder = temporaryFolder("plateau-job")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func args(_ out: String) -> [String] {
            ["train", "--data", sampleDataPath(), "--out", out, "--layers", "1", "--width", "32", "--heads", "2",
             "--seq", "32", "--batch", "4", "--steps", "200", "--eval-every", "10", "--eval-batches", "2", "--log-every", "10",
             "--threads", "1", "--seed", "3", "--grow-on-plateau", "2/32/2,2/64/4", "--grow-ramp", "10"]
        }
        let single = folder + "/single", multi = folder + "/multi"
        let a = try runJob(1, args(single) + ["--accumulation", "2"])
        let grew = try XCTUnwrap(a.split(separator: "\n").first { $0.contains("| grew ") }, a)
        let step = try XCTUnwrap(Int(grew.split(separator: "|")[0].split(separator: " ")[1]))
        XCTAssertTrue(grew.contains("ramp 0/10"), String(grew))
        let expected = try JobRecords.metrics(single)
        let checks = expected.filter { $0.contains("plateau_check") }
        XCTAssertGreaterThanOrEqual(checks.count, 5)
        XCTAssertTrue(checks.contains { $0.contains("\"decision\":\"grow\"") && $0.contains("\"step\":\(step),") })
        let last = try XCTUnwrap(expected.last { $0.contains("\"loss\"") })
        let lastStep = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])?["step"] as? Int)
        XCTAssertTrue((step + 1)..<200 ~= lastStep, "the grown model's updates cost more: the budget ends before 200 (at \(lastStep))")

        _ = try runJob(2, args(multi) + ["--accumulation", "1", "--stop-after", "\(step)"])
        let midRamp = try runJob(2, ["train", "--out", multi, "--resume", "--threads", "1", "--stop-after", "\(step + 5)"])
        XCTAssertFalse(midRamp.contains("| grew "), "the growth was in the checkpoint: " + midRamp)
        let b = try runJob(2, ["train", "--out", multi, "--resume", "--threads", "1"])
        XCTAssertEqual(JobRecords.finalHash(b), try XCTUnwrap(JobRecords.finalHash(a)))
        let resumed = try JobRecords.metrics(multi)
        XCTAssertEqual(resumed.filter { $0.contains("plateau_check") }, checks)
        // The stop in the ramp logged a short window (updates 121-125), so the next one (126-130) averages fewer updates.
        let windowed = { (records: [String]) in
            records.filter { $0.contains("\"loss\"") && !$0.contains("\"step\":\(step + 5),") && !$0.contains("\"step\":\(step + 10),") }
        }
        XCTAssertEqual(windowed(resumed), windowed(expected))
    }
}
