import Foundation
import Model
import Tensors
import TestSupport
import XCTest

/// bf16 mixed precision against float32 on the same batch (../shared/spec/TESTING.md, bf16):
/// loss within 1e-2 relative, each gradient tensor within 5e-2 as ||g_bf16 - g_fp32|| / ||g_fp32||,
/// and the bit-for-bit rules (thread-count invariance) in bf16 too.
final class MixedPrecisionTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    struct Comparison {
        var lossError: Double
        var worstTensor: (name: String, error: Double)
    }

    /// Runs forward and backward in fp32 and then bf16 on the same parameters and batch.
    func compare(_ model: LanguageModel, tokens: [Int32], targets: [Int32], batch: Int, seq: Int,
                 dropoutSeed: UInt64?) -> Comparison {
        func pass(_ precision: Precision) -> (Double, [Float]) {
            model.precision = precision
            model.zeroGradients()
            model.forward(tokens: tokens, targets: targets, batch: batch, seq: seq, dropoutSeed: dropoutSeed)
            model.backward()
            return (model.lastLoss, model.gradients.toArray())
        }
        let (loss32, g32) = pass(.fp32)
        let (loss16, g16) = pass(.bf16)
        var worst = (name: "", error: 0.0)
        for spec in model.tensors {
            var difference = 0.0, norm = 0.0
            for i in spec.range {
                difference += pow(Double(g16[i]) - Double(g32[i]), 2)
                norm += pow(Double(g32[i]), 2)
            }
            let error = (difference / max(norm, 1e-30)).squareRoot()
            if error > worst.error { worst = (spec.name, error) }
        }
        return Comparison(lossError: abs(loss16 - loss32) / abs(loss32), worstTensor: worst)
    }

    func checkAgainstFloat32(_ model: LanguageModel, tokens: [Int32], targets: [Int32], batch: Int, seq: Int,
                             dropoutSeed: UInt64?, label: String) {
        let result = compare(model, tokens: tokens, targets: targets, batch: batch, seq: seq, dropoutSeed: dropoutSeed)
        print(String(format: "%@: bf16 vs fp32 loss %.2e relative, worst gradient tensor %@ at %.2e",
                     label, result.lossError, result.worstTensor.name, result.worstTensor.error))
        XCTAssertLessThan(result.lossError, 1e-2, label)
        XCTAssertLessThan(result.worstTensor.error, 5e-2, "\(label): \(result.worstTensor.name)")
        // bf16 really ran: the gradients are not the float32 ones.
        XCTAssertGreaterThan(result.worstTensor.error, 1e-4, "\(label): bf16 gradients equal to float32's")
    }

    func testGPTAgainstFloat32() throws {
        for dropout: Float in [0, 0.1] {
            let config = Tiny.config(dropout: dropout)
            let model = try GPT(config: config, seed: 11)
            fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: 12)
            let b = 2, t = config.context
            checkAgainstFloat32(model, tokens: randomTokens(b * t, vocab: config.vocab, seed: 13),
                                targets: randomTokens(b * t, vocab: config.vocab, seed: 14), batch: b, seq: t,
                                dropoutSeed: dropout > 0 ? 77 : nil, label: "GPT tiny, dropout \(dropout)")
        }
        // A wider model at initialization: longer sums, several causal blocks.
        let config = ModelConfig(layers: 2, width: 128, heads: 4, vocab: 301, context: 96)
        let model = try GPT(config: config, seed: 3)
        checkAgainstFloat32(model, tokens: randomTokens(2 * 96, vocab: 301, seed: 4), targets: randomTokens(2 * 96, vocab: 301, seed: 5),
                            batch: 2, seq: 96, dropoutSeed: nil, label: "GPT 2/128, T 96")
    }

    func testBERTAgainstFloat32() throws {
        var config = ModelConfig(architecture: .bert, layers: 2, width: 16, heads: 2, vocab: 32, context: 8, dropout: 0.1)
        config.padToken = 1
        let model = try BERT(config: config, seed: 3)
        fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: 4)
        for spec in model.tensors where spec.name.hasSuffix("ln.weight") || spec.name.hasSuffix("ln1.weight") || spec.name.hasSuffix("ln2.weight") {
            for i in spec.range { model.parameters[i] += 1 }
        }
        let b = 3, t = 8
        var tokens = randomTokens(b * t, vocab: 32, seed: 13).map { $0 == 1 ? 2 : $0 }
        for i in [t + 5, t + 6, t + 7, 2 * t] { tokens[i] = 1 }
        var targets = [Int32](repeating: -1, count: b * t)
        for i in stride(from: 0, to: b * t, by: 3) { targets[i] = Int32((i * 7) % 32) }
        checkAgainstFloat32(model, tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 77,
                            label: "BERT tiny, padding and dropout")
    }

    /// The weight copy follows the parameters: converted by the first forward pass, left alone
    /// while it is current, converted again after `parametersChanged`.
    func testWeightCopyFollowsParameters() throws {
        let config = Tiny.config()
        let model = try GPT(config: config, seed: 1)
        model.precision = .bf16
        let tokens = randomTokens(16, vocab: config.vocab, seed: 2), targets = randomTokens(16, vocab: config.vocab, seed: 3)
        func copyMatches(_ values: [Float]) -> Bool {
            (0..<values.count).allSatisfy { model.weightCopy!.pointer[$0] == BF16(values[$0]) }
        }
        model.forward(tokens: tokens, targets: targets, batch: 2, seq: 8)
        let old = model.parameters.toArray()
        XCTAssertTrue(copyMatches(old))
        fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: 4)
        model.forward(tokens: tokens, targets: targets, batch: 2, seq: 8)
        XCTAssertTrue(copyMatches(old), "a current copy is not converted again")
        model.parametersChanged()
        let bf16Loss = model.forward(tokens: tokens, targets: targets, batch: 2, seq: 8)
        XCTAssertTrue(copyMatches(model.parameters.toArray()))
        model.precision = .fp32
        XCTAssertNil(model.weightCopy)
        let float = model.forward(tokens: tokens, targets: targets, batch: 2, seq: 8)
        XCTAssertNotEqual(float, bf16Loss)
        XCTAssertEqual(Double(float), Double(bf16Loss), accuracy: 1e-2 * Double(float))
    }

    /// bf16 gradients are bit-identical with 1, 2 and 3 threads (GPT and BERT with padding,
    /// dropout and the pruned last block).
    func testGradientsBitIdenticalAcrossThreadCounts() throws {
        var bert = ModelConfig(architecture: .bert, layers: 2, width: 128, heads: 4, vocab: 301, context: 64, dropout: 0.1)
        bert.padToken = 0
        let gpt = ModelConfig(layers: 2, width: 128, heads: 4, vocab: 301, context: 96, dropout: 0.1)
        for config in [gpt, bert] {
            let b = 4, t = config.context
            var tokens = randomTokens(b * t, vocab: config.vocab, seed: 2)
            var targets = randomTokens(b * t, vocab: config.vocab, seed: 3)
            if config.architecture == .bert {
                for i in 200..<256 { tokens[i] = 0 }
                for i in 0..<(b * t) where i % 7 != 0 { targets[i] = -1 }
            }
            var results: [(Float, [Float])] = []
            for threads in [1, 2, 3] {
                Parallel.configure(threads: threads)
                let model = try makeModel(config: config, seed: 1)
                model.precision = .bf16
                model.zeroGradients()
                let loss = model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 5)
                model.backward()
                results.append((loss, model.gradients.toArray()))
            }
            for k in 1..<results.count {
                XCTAssertEqual(results[0].0.bitPattern, results[k].0.bitPattern, "\(config.architecture) loss")
                let differing = zip(results[0].1, results[k].1).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(config.architecture): \(differing) gradient values differ between 1 and \(k + 1) threads")
            }
        }
    }
}
