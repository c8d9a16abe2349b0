import Foundation
import Model
import Tensors
import TestSupport
import XCTest

final class GPTTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    func checkWholeModel(dropout: Float) throws {
        let config = Tiny.config(dropout: dropout)
        let model = try GPT(config: config, seed: 11)
        // Larger weights than at initialization so every path carries gradient.
        fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: 12)
        let b = 2, t = config.context
        let tokens = randomTokens(b * t, vocab: config.vocab, seed: 13)
        var targets = randomTokens(b * t, vocab: config.vocab, seed: 14)
        targets[5] = -1
        let seed: UInt64? = dropout > 0 ? 77 : nil
        func loss() -> Double {
            model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: seed)
            return model.lastLoss
        }
        _ = loss()
        model.zeroGradients()
        model.backward()
        let analytic = FloatBuffer(count: model.parameterCount)
        analytic.copy(from: model.gradients)
        var mismatches: [GradientMismatch] = []
        for (k, spec) in model.layout.tensors.enumerated() {
            mismatches += FiniteDifference.check(
                spec.name, values: model.parameters.pointer + spec.offset, analytic: analytic.pointer + spec.offset,
                count: spec.count, samples: 20, seed: UInt64(100 + k), loss: loss)
        }
        XCTAssert(mismatches.isEmpty, mismatches.prefix(8).map(\.description).joined(separator: "\n"))
    }

    func testWholeModelGradient() throws { try checkWholeModel(dropout: 0) }
    func testWholeModelGradientWithDropout() throws { try checkWholeModel(dropout: 0.2) }

    func testInitialLossIsLogVocab() throws {
        let config = Tiny.config()
        let model = try GPT(config: config, seed: 1)
        let b = 4, t = config.context
        let loss = model.forward(tokens: randomTokens(b * t, vocab: config.vocab, seed: 2),
                                 targets: randomTokens(b * t, vocab: config.vocab, seed: 3), batch: b, seq: t)
        XCTAssertEqual(Double(loss), log(Double(config.vocab)), accuracy: 0.1)
    }

    /// Gradients of a model large enough that every GEMM and kernel is split across threads are
    /// bit-identical with 1 and 2 threads.
    func testGradientsBitIdenticalAcrossThreadCounts() throws {
        let config = ModelConfig(layers: 2, width: 128, heads: 4, vocab: 301, context: 64, dropout: 0.1)
        let b = 4, t = 64
        let tokens = randomTokens(b * t, vocab: config.vocab, seed: 2)
        let targets = randomTokens(b * t, vocab: config.vocab, seed: 3)
        func gradients(threads: Int) throws -> (Float, [Float]) {
            Parallel.configure(threads: threads)
            let model = try GPT(config: config, seed: 1)
            model.zeroGradients()
            let loss = model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 5)
            model.backward()
            return (loss, model.gradients.toArray())
        }
        let (loss1, g1) = try gradients(threads: 1)
        let (loss2, g2) = try gradients(threads: 2)
        XCTAssertEqual(loss1.bitPattern, loss2.bitPattern)
        let differing = zip(g1, g2).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        XCTAssertEqual(differing, 0, "\(differing) of \(g1.count) gradient values differ between 1 and 2 threads")
    }

    func testInitializationIsDeterministicAndThreadIndependent() throws {
        let config = ModelConfig(layers: 1, width: 64, heads: 2, vocab: 5000, context: 16)
        Parallel.configure(threads: 1)
        let a = try GPT(config: config, seed: 9)
        Parallel.configure(threads: 2)
        let b = try GPT(config: config, seed: 9)
        let c = try GPT(config: config, seed: 10)
        XCTAssertTrue(bitIdentical(a.parameters.pointer, b.parameters.pointer, a.parameterCount))
        XCTAssertFalse(bitIdentical(a.parameters.pointer, c.parameters.pointer, a.parameterCount))
        // Embedding std is about 0.02.
        let wte = a.layout.tensor(named: "wte")!
        let values = (0..<wte.count).map { Double(a.parameters[wte.offset + $0]) }
        let std = (values.map { $0 * $0 }.reduce(0, +) / Double(values.count)).squareRoot()
        XCTAssertEqual(std, 0.02, accuracy: 0.001)
    }

    func testInvalidConfigNamesField() {
        XCTAssertThrowsError(try GPT(config: ModelConfig(layers: 2, width: 30, heads: 4, vocab: 10, context: 8), seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("heads"), "\(error)")
        }
        XCTAssertThrowsError(try GPT(config: ModelConfig(layers: 0, width: 32, heads: 4, vocab: 10, context: 8), seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("layers"), "\(error)")
        }
    }
}
