import Lifelong
import Model
import Training
import XCTest

final class StagePlanTests: XCTestCase {
    let good = """
        name: sample
        model: {layers: 2, width: 64, heads: 2, context: 64}
        data: data/prepared
        seed: 3
        defaults:
          batch: 4
          accumulation: 4
          lr: 1.0e-3
          replay: {ratio: 0.25, weighting: adaptive, interval: 10}
        stages:
          - domain: literature
            steps: 100
          - domain: legal
            steps: 50
            lr: 5.0e-4
            grow: {layers: 3, width: 96, heads: 3, depthMode: identity, noise: 0}
            frw: {steps: 10}
          - domain: biomedical
            steps: 50
            prompts: false
        """

    func testParsesAndResolvesDefaults() throws {
        let plan = try StagePlan.parse(good)
        XCTAssertEqual(plan.name, "sample")
        XCTAssertEqual(plan.seed, 3)
        XCTAssertEqual(plan.stages.map(\.domain), ["literature", "legal", "biomedical"])
        XCTAssertEqual(plan.stages[1].grow?.depthMode, .identity)
        XCTAssertEqual(plan.stages[1].frw?.steps, 10)
        let s0 = plan.settings(ofStage: 0), s1 = plan.settings(ofStage: 1), s2 = plan.settings(ofStage: 2)
        XCTAssertEqual(s0.lr, 1e-3)
        XCTAssertEqual(s1.lr, 5e-4)
        XCTAssertEqual(s0.batch, 4)
        XCTAssertEqual(s0.seq, 64)               // built-in: the model's context
        XCTAssertEqual(s0.schedule, .linear)     // built-in
        XCTAssertEqual(s0.replay.weighting, .adaptive)
        XCTAssertEqual(s2.prompts, false)
        XCTAssertEqual(s0.prompts, true)
    }

    /// Every kind of mistake is rejected with the field named.
    func testMistakesNameTheField() {
        let cases: [(String, String, String)] = [
            ("steps: 100", "step: 100", "stages[0].step"),                                  // unknown key
            ("steps: 100", "steps: 0", "stages[0].steps"),                                  // out of range
            ("steps: 100", "steps: many", "stages[0].steps"),                               // wrong type
            ("model: {layers: 2, width: 64, heads: 2, context: 64}", "model: {layers: 2, width: 64, heads: 3, context: 64}", "model.heads"),
            ("model: {layers: 2, width: 64, heads: 2, context: 64}", "model: {layers: 2, width: 64, heads: 2}", "model.context"), // missing
            ("grow: {layers: 3, width: 96, heads: 3, depthMode: identity, noise: 0}", "grow: {layers: 1, width: 96, heads: 3}", "stages[1].grow.layers"),
            ("grow: {layers: 3, width: 96, heads: 3, depthMode: identity, noise: 0}", "grow: {layers: 3, width: 96, heads: 3, deptMode: copy}", "stages[1].grow.deptMode"),
            ("grow: {layers: 3, width: 96, heads: 3, depthMode: identity, noise: 0}", "grow: {layers: 3, width: 96, heads: 3, depthMode: sideways}", "stages[1].grow.depthMode"),
            ("frw: {steps: 10}", "frw: {steps: -1}", "stages[1].frw.steps"),
            ("replay: {ratio: 0.25, weighting: adaptive, interval: 10}", "replay: {ratio: 1.5}", "stages[0].replay.ratio"),
            ("lr: 1.0e-3", "lr: -1", "stages[0].lr"),
            ("batch: 4", "batch: 4\n  warmup: 2", "stages[0].warmup"),
            ("domain: biomedical", "domain: legal", "stages[2].domain"),                   // repeated domain
            ("data: data/prepared", "", "data"),
        ]
        for (original, replacement, field) in cases {
            let text = good.replacingOccurrences(of: original, with: replacement)
            XCTAssertNotEqual(text, good, "case \(field) did not change the plan")
            XCTAssertThrowsError(try StagePlan.parse(text, path: "plan.yaml"), field) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("plan.yaml: \(field)"), "expected the field \(field) named first: \(message)")
            }
        }
    }

    /// The plan-level precision key: fp32 when absent, bf16 when set, an unknown value named.
    func testPrecisionKey() throws {
        let absent = try StagePlan.parse(good)
        XCTAssertEqual(absent.precision, .fp32)
        let bf16 = try StagePlan.parse(good.replacingOccurrences(of: "seed: 3", with: "seed: 3\nprecision: bf16"))
        XCTAssertEqual(bf16.precision, .bf16)
        XCTAssertThrowsError(try StagePlan.parse(good.replacingOccurrences(of: "seed: 3", with: "seed: 3\nprecision: fp16"), path: "plan.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("plan.yaml: precision"), "\(error)")
        }
    }

    /// The plan-level data-parallel keys reach every stage's training options: zero (ZeRO stage)
    /// and allreduceDType (the gradient exchange), off and fp32 when absent, bad values named.
    func testZeroAndExchangeKeys() throws {
        func options(_ plan: StagePlan) -> TrainingOptions {
            plan.settings(ofStage: 0).trainingOptions(plan: plan, tokenizer: "bytes", steps: 10, domain: "a", maskedLM: nil)
        }
        let absent = try StagePlan.parse(good)
        XCTAssertNil(options(absent).zero)
        XCTAssertEqual(options(absent).exchangePrecision, .fp32)
        let set = try StagePlan.parse(good.replacingOccurrences(of: "seed: 3", with: "seed: 3\nzero: 1\nallreduceDType: bf16"))
        XCTAssertEqual(options(set).zero, 1)
        XCTAssertEqual(options(set).exchangePrecision, .bf16)
        XCTAssertThrowsError(try StagePlan.parse(good.replacingOccurrences(of: "seed: 3", with: "seed: 3\nallreduceDType: fp16"), path: "plan.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("plan.yaml: allreduceDType"), "\(error)")
        }
    }

    func testFirstStageCannotGrow() {
        let text = """
            model: {layers: 2, width: 64, heads: 2, context: 64}
            data: x
            stages:
              - domain: a
                steps: 10
                grow: {layers: 3, width: 64, heads: 2}
            """
        XCTAssertThrowsError(try StagePlan.parse(text)) { XCTAssertTrue("\($0)".contains("stages[0].grow"), "\($0)") }
    }

    func testMissingFileIsNamed() {
        XCTAssertThrowsError(try StagePlan.load(path: "/no/such/plan.yaml")) { XCTAssertTrue("\($0)".contains("/no/such/plan.yaml"), "\($0)") }
    }
}
