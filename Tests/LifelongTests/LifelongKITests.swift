import Communication
import Foundation
import Lifelong
import Tensors
import TestSupport
import Training
import XCTest

/// A stage plan's `ki` block: the grown model of stage 1 learns from the model that ended stage
/// 0 (`teacher: previous`), and a stop inside the KI updates resumes exactly.
final class LifelongKITests: XCTestCase {
    static func plan(data: String, ki: String = "{teacher: previous, steps: 4, temperature: 2, topK: 10, until: steps}") -> String {
        """
        name: ki
        model: {layers: 1, width: 32, heads: 2, context: 32, dropout: 0.1}
        data: \(data)
        seed: 3
        defaults:
          batch: 4
          seq: 32
          accumulation: 2
          lr: 3.0e-3
          warmup: 0.2
          evalBatches: 2
          logEvery: 1
          replay: {ratio: 0.5}
        stages:
          - domain: literature
            steps: 5
          - domain: legal
            steps: 6
            grow: {layers: 2, width: 64, heads: 4}
            frw: {steps: 2}
            ki: \(ki)
        """
    }

    override func setUp() {
        Parallel.configure(threads: 2)
        StopSignal.reset()
    }

    func records(_ out: String) throws -> [[String: Any]] {
        try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["loss"] != nil && $0["event"] == nil }
    }

    /// a_t falls 1, 0.75, 0.5, 0.25, 0, 0 over stage 1's training updates (none in its warmup or
    /// in stage 0); teacher FLOPs are logged; stopping after the stage's second KI update and
    /// resuming gives the same losses bit for bit.
    func testPreviousStageTeachesTheGrownModelAndResumesExactly() throws {
        let data = LifelongRunTests.dataFolder
        let plan = try StagePlan.parse(Self.plan(data: data))
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        _ = try LifelongRun(plan: plan, out: straight, communicator: SingleProcess(), resume: false, print: { _ in }).run()
        let reference = try records(straight)
        XCTAssertEqual(reference.count, 5 + 2 + 6)
        let weights = reference.map { ($0["kd_weight"] as? Double) ?? -1 }
        XCTAssertEqual(Array(weights.suffix(6)), [1, 0.75, 0.5, 0.25, 0, 0])
        XCTAssertTrue(weights.prefix(7).allSatisfy { $0 == -1 }, "\(weights)")
        let flops = reference.last!["stage_teacher_flops"] as? Double ?? 0
        XCTAssertGreaterThan(flops, 0)

        XCTAssertNil(try LifelongRun(plan: plan, out: split, communicator: SingleProcess(), resume: false, print: { _ in }).run(stopAfter: 9))
        _ = try LifelongRun(plan: plan, out: split, communicator: SingleProcess(), resume: true, print: { _ in }).run()
        func losses(_ r: [[String: Any]]) -> [Double] { r.map { $0["loss"] as! Double } }
        XCTAssertEqual(losses(try records(split)), losses(reference))
    }

    /// `until: teacher`: the grown student is validated on the stage's domain at every update;
    /// once its loss is at or below the previous model's, distillation ends (an event in
    /// metrics.jsonl, a_t = 0 after it), and a stop after that decision resumes exactly.
    func testStudentPassingThePreviousModelEndsDistillation() throws {
        let data = LifelongRunTests.dataFolder
        let text = Self.plan(data: data, ki: "{teacher: previous, steps: 6, schedule: constant, weight: 0.5, until: teacher}")
            .replacingOccurrences(of: "frw: {steps: 2}", with: "frw: {steps: 2}\n    evalEvery: 1")
        let plan = try StagePlan.parse(text)
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        _ = try LifelongRun(plan: plan, out: straight, communicator: SingleProcess(), resume: false, print: { _ in }).run()
        let all = try String(contentsOfFile: straight + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let end = try XCTUnwrap(all.first { $0["event"] as? String == "distillation_end" }, "the student never passed the teacher")
        let update = try XCTUnwrap(end["update"] as? Int)
        XCTAssertLessThanOrEqual(try XCTUnwrap(end["perplexity"] as? Double), try XCTUnwrap(end["teacher_perplexity"] as? Double))
        let weights = try records(straight).suffix(6).map { try XCTUnwrap($0["kd_weight"] as? Double) }
        XCTAssertEqual(weights, (1...6).map { $0 <= update ? 0.5 : 0 }, "decided after update \(update)")

        XCTAssertNil(try LifelongRun(plan: plan, out: split, communicator: SingleProcess(), resume: false, print: { _ in }).run(stopAfter: 7 + update))
        _ = try LifelongRun(plan: plan, out: split, communicator: SingleProcess(), resume: true, print: { _ in }).run()
        func losses(_ r: [[String: Any]]) -> [Double] { r.map { $0["loss"] as! Double } }
        XCTAssertEqual(losses(try records(split)), losses(try records(straight)))
    }

    /// A `ki` block's defaults: T_kd the whole phase, tau 1, and the early end only for a
    /// teacher other than `previous` (which the grown student passes at once).
    func testKIBlockDefaults() throws {
        let previous = try XCTUnwrap(try StagePlan.parse(Self.plan(data: "d", ki: "{teacher: previous}")).stages[1].ki)
        XCTAssertEqual(previous.until, .steps)
        let kd = previous.options(startStep: 11, phaseSteps: 6)
        XCTAssertEqual([kd.steps, kd.startStep], [6, 11])
        XCTAssertEqual(kd.temperature, 1)
        XCTAssertEqual(kd.schedule, .linear)
        let other = try XCTUnwrap(try StagePlan.parse(Self.plan(data: "d", ki: "{teacher: runs/t}")).stages[1].ki)
        XCTAssertEqual(other.until, .teacher)
    }

    /// `previous` on the first stage, and bad values, are errors naming the field.
    func testBadKIBlocksAreNamed() throws {
        let first = Self.plan(data: "d").replacingOccurrences(of: "steps: 5", with: "steps: 5\n    ki: {teacher: previous, steps: 2}")
        XCTAssertThrowsError(try StagePlan.parse(first)) { XCTAssertTrue("\($0)".contains("stages[0].ki.teacher"), "\($0)") }
        XCTAssertThrowsError(try StagePlan.parse(Self.plan(data: "d", ki: "{teacher: previous, steps: 2, temperature: 0}"))) {
            XCTAssertTrue("\($0)".contains("stages[1].ki.temperature"), "\($0)")
        }
        XCTAssertThrowsError(try StagePlan.parse(Self.plan(data: "d", ki: "{teacher: previous, steps: 2, tau: 2}"))) {
            XCTAssertTrue("\($0)".contains("tau"), "\($0)")
        }
    }
}
