import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// elle against PyTorch (Hugging Face GPT2LMHeadModel), fixtures written by
/// scripts/make_gpt_fixture.py. Tolerances from TESTING.md.
final class ReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Config: Decodable { var layers, width, heads, vocab, seq, batch: Int }
        struct Adam: Decodable { var lr, beta1, beta2, eps, weight_decay: Float }
        var config: Config
        var adam: Adam
        var tokens: [Int32]
        var targets: [Int32]
        var loss: Double
        var logits: [Float]
        var parameters: [Float]
        var gradients: [Float]
        var updated: [Float]
        var steps: ReferenceSteps
    }

    func load(_ name: String) throws -> Fixture {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtureURL("gpt-\(name).json")))
    }

    /// The fixture's model: its config without dropout, over its parameters.
    func model(_ f: Fixture) throws -> GPT {
        let c = f.config
        let config = ModelConfig(layers: c.layers, width: c.width, heads: c.heads, vocab: c.vocab, context: c.seq, dropout: 0)
        return try GPT(config: config, parameters: FloatBuffer(f.parameters))
    }

    func check(_ name: String) throws {
        Parallel.configure(threads: 2)
        let f = try load(name)
        let c = f.config
        let model = try model(f)
        XCTAssertEqual(model.parameterCount, f.parameters.count)

        model.zeroGradients()
        let loss = model.forward(tokens: f.tokens, targets: f.targets, batch: c.batch, seq: c.seq)
        XCTAssertEqual(Double(loss), f.loss, accuracy: 1e-4 * abs(f.loss), "loss")
        let logitsError = maxRelativeError(model.logits, f.logits)
        XCTAssertLessThan(logitsError, 1e-4, "logits relative error \(logitsError)")

        model.backward()
        for spec in model.layout.tensors {
            let error = normRelativeError(model.gradients.pointer + spec.offset, f.gradients[spec.range])
            XCTAssertLessThan(error, 1e-4, "gradient of \(spec.name): relative error \(error)")
        }

        // One AdamW step, compared where the reference gradient is not tiny (TESTING.md).
        let optimizer = AdamW(tensors: model.layout.tensors, count: model.parameterCount,
                              settings: AdamWSettings(beta1: f.adam.beta1, beta2: f.adam.beta2,
                                                      epsilon: f.adam.eps, weightDecay: f.adam.weight_decay))
        optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: f.adam.lr)
        var rms = 0.0
        for g in f.gradients { rms += Double(g) * Double(g) }
        rms = (rms / Double(f.gradients.count)).squareRoot()
        var checked = 0, worst = 0.0
        for i in 0..<f.updated.count where Double(abs(f.gradients[i])) >= 1e-3 * rms {
            let scale = max(abs(Double(f.updated[i])), 1e-3)
            worst = max(worst, abs(Double(model.parameters[i]) - Double(f.updated[i])) / scale)
            checked += 1
        }
        XCTAssertGreaterThan(checked, f.updated.count / 2)
        XCTAssertLessThan(worst, 1e-5, "parameters after one AdamW step: worst relative error \(worst)")
    }

    func testTinyMatchesPyTorch() throws { try check("tiny") }
    func testOddSizesMatchPyTorch() throws { try check("odd") }

    /// Three updates with clipping and weight decay against torch's (`ReferenceSteps`).
    func testTinyClippedStepsMatchPyTorch() throws {
        let f = try load("tiny")
        f.steps.check(try model(f), batch: f.config.batch, seq: f.config.seq, fixture: "gpt-tiny")
    }
    func testOddSizesClippedStepsMatchPyTorch() throws {
        let f = try load("odd")
        f.steps.check(try model(f), batch: f.config.batch, seq: f.config.seq, fixture: "gpt-odd")
    }
}
