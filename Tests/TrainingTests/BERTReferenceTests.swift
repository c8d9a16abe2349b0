import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// elle's BERT against PyTorch (Hugging Face BertForMaskedLM), fixtures written by
/// scripts/make_bert_fixture.py. Tolerances from TESTING.md. Hugging Face projects every
/// position; elle's head runs at the masked positions, so its logits are compared with the
/// reference's rows at those positions, and once more at every position (elle without targets).
final class BERTReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Config: Decodable { var layers, width, heads, vocab, seq, batch: Int; var pad: Int32 }
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
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtureURL("bert-\(name).json")))
    }

    /// The fixture's model: its config without dropout, over its parameters.
    func model(_ f: Fixture) throws -> BERT {
        let c = f.config
        var config = ModelConfig(architecture: .bert, layers: c.layers, width: c.width, heads: c.heads, vocab: c.vocab,
                                 context: c.seq, dropout: 0)
        config.padToken = c.pad
        return try BERT(config: config, parameters: FloatBuffer(f.parameters))
    }

    func check(_ name: String) throws {
        Parallel.configure(threads: 2)
        let f = try load(name)
        let c = f.config
        let model = try model(f)
        XCTAssertEqual(model.parameterCount, f.parameters.count)
        let n = c.batch * c.seq, v = c.vocab

        // Every position (no targets) against the reference's logits.
        model.forward(tokens: f.tokens, targets: nil, batch: c.batch, seq: c.seq)
        XCTAssertEqual(model.predictedCount, n)
        let allError = maxRelativeError(model.logits, f.logits)
        XCTAssertLessThan(allError, 1e-4, "logits at every position: relative error \(allError)")

        model.zeroGradients()
        let loss = model.forward(tokens: f.tokens, targets: f.targets, batch: c.batch, seq: c.seq)
        XCTAssertEqual(Double(loss), f.loss, accuracy: 1e-4 * abs(f.loss), "loss")
        let masked = (0..<n).filter { f.targets[$0] >= 0 }
        XCTAssertEqual(model.predictedCount, masked.count)
        let reference = masked.flatMap { f.logits[($0 * v)..<(($0 + 1) * v)] }
        let maskedError = maxRelativeError(model.logits, reference)
        XCTAssertLessThan(maskedError, 1e-4, "logits at the \(masked.count) masked positions: relative error \(maskedError)")
        print("bert-\(name): \(masked.count) masked positions, logits relative error \(maskedError) (every position \(allError))")

        model.backward()
        var worst = 0.0
        for spec in model.layout.tensors {
            let error = normRelativeError(model.gradients.pointer + spec.offset, f.gradients[spec.range])
            worst = max(worst, error)
            XCTAssertLessThan(error, 1e-4, "gradient of \(spec.name): relative error \(error)")
        }
        print("bert-\(name): worst gradient relative error \(worst)")

        // One AdamW step, compared where the reference gradient is not tiny (TESTING.md).
        let optimizer = AdamW(tensors: model.tensors, count: model.parameterCount,
                              settings: AdamWSettings(beta1: f.adam.beta1, beta2: f.adam.beta2,
                                                      epsilon: f.adam.eps, weightDecay: f.adam.weight_decay))
        optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: f.adam.lr)
        var rms = 0.0
        for g in f.gradients { rms += Double(g) * Double(g) }
        rms = (rms / Double(f.gradients.count)).squareRoot()
        var checked = 0, worstStep = 0.0
        for i in 0..<f.updated.count where Double(abs(f.gradients[i])) >= 1e-3 * rms {
            let scale = max(abs(Double(f.updated[i])), 1e-3)
            worstStep = max(worstStep, abs(Double(model.parameters[i]) - Double(f.updated[i])) / scale)
            checked += 1
        }
        XCTAssertGreaterThan(checked, f.updated.count / 2)
        XCTAssertLessThan(worstStep, 1e-5, "parameters after one AdamW step: worst relative error \(worstStep)")
    }

    func testTinyMatchesPyTorch() throws { try check("tiny") }
    /// Sizes that are not multiples of the SIMD width, and a sequence ending in 5 pads.
    func testOddSizesWithPaddingMatchPyTorch() throws { try check("odd") }

    /// Three updates with clipping and weight decay against torch's (`ReferenceSteps`).
    func testTinyClippedStepsMatchPyTorch() throws {
        let f = try load("tiny")
        f.steps.check(try model(f), batch: f.config.batch, seq: f.config.seq, fixture: "bert-tiny")
    }
    func testOddSizesWithPaddingClippedStepsMatchPyTorch() throws {
        let f = try load("odd")
        f.steps.check(try model(f), batch: f.config.batch, seq: f.config.seq, fixture: "bert-odd")
    }
}
