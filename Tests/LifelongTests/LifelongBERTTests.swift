import Corpus
import Communication
import Foundation
import Lifelong
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// A lifelong BERT plan: masked-LM stages with the domain prompt after `<|bos|>`, growth between
/// them, and stage checkpoints that load as BERT models.
final class LifelongBERTTests: XCTestCase {
    override func setUp() {
        Parallel.configure(threads: 2)
        StopSignal.reset()
    }

    func plan(prompts: Bool) -> String {
        """
        name: bert-test
        model: {architecture: bert, layers: 1, width: 32, heads: 2, context: 32, dropout: 0.1}
        data: \(LifelongRunTests.dataFolder)
        seed: 3
        defaults: {batch: 4, seq: 32, accumulation: 2, lr: 3.0e-3, warmup: 0.2, evalBatches: 2, logEvery: 1, prompts: \(prompts),
                   replay: {ratio: 0.5}}
        stages:
          - domain: literature
            steps: 5
          - domain: legal
            steps: 4
            grow: {layers: 2, width: 48, heads: 3, depthMode: copy, noise: 0.01}
            frw: {steps: 2}
        """
    }

    func testTwoStageBERTPlanGrowsAndItsCheckpointsLoad() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = try LifelongRun(plan: try StagePlan.parse(plan(prompts: true)), out: out, communicator: SingleProcess(),
                                  resume: false, print: { _ in })
        let matrix = try XCTUnwrap(try run.run())
        XCTAssertEqual(matrix.values.map(\.count), [1, 2])
        XCTAssertTrue(matrix.values.joined().allSatisfy { $0.isFinite && $0 > 1 }, "\(matrix.values)")
        XCTAssertEqual(run.trainer.step, 5 + 2 + 4)
        let final = run.trainer.model.config
        XCTAssertEqual(final.architecture, .bert)
        XCTAssertEqual([final.layers, final.width, final.heads], [2, 48, 3])
        XCTAssertEqual(final.padToken, run.tokenizer.pad)
        XCTAssertEqual(run.trainer.options.maskedLM?.beginToken, run.tokenizer.beginOfSequence)

        for (name, width) in [("stage-00-literature.ckpt", 32), ("stage-01-legal.ckpt", 48)] {
            let saved = try Checkpoint.read(from: out + "/" + name)
            let model = try makeModel(config: saved.config, parameters: try XCTUnwrap(saved.tensor("parameters")))
            XCTAssertTrue(model is BERT, name)
            XCTAssertEqual(model.config.width, width, name)
            XCTAssertNotNil(saved.state.options.maskedLM, name)
        }
        let last = try Checkpoint.read(from: out + "/stage-01-legal.ckpt")
        let parameters = try XCTUnwrap(last.tensor("parameters"))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: parameters.pointer, count: parameters.count)),
                       Array(UnsafeBufferPointer(start: run.trainer.model.parameters.pointer, count: parameters.count)))

        // The prompts reach the BERT sequences: without them the same plan trains differently.
        let plain = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: plain) }
        let unprompted = try LifelongRun(plan: try StagePlan.parse(plan(prompts: false)), out: plain, communicator: SingleProcess(),
                                         resume: false, print: { _ in })
        let other = try XCTUnwrap(try unprompted.run())
        XCTAssertNotEqual(other.values[0][0], matrix.values[0][0])
    }
}
