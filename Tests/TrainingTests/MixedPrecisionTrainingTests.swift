import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// bf16 training: the weight copy AdamW writes, and a bf16 run against a float32 one.
final class MixedPrecisionTrainingTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    /// The copy AdamW writes in its pass is the bf16 rounding of the parameters it wrote.
    func testAdamWWritesTheWeightCopy() throws {
        let model = try GPT(config: Tiny.config(), seed: 1)
        model.precision = .bf16
        let optimizer = AdamW(tensors: model.tensors, count: model.parameterCount, settings: AdamWSettings())
        fillUniform(model.gradients.pointer, model.parameterCount, scale: 0.1, seed: 2)
        let copy = try XCTUnwrap(model.weightCopy)
        XCTAssertFalse(copy.isCurrent)
        optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: 1e-2, weightCopy: copy)
        XCTAssertTrue(copy.isCurrent)
        for i in 0..<model.parameterCount { XCTAssertEqual(copy.pointer[i], BF16(model.parameters[i]), "parameter \(i)") }
    }

    /// 30 updates of a small GPT on real text: the bf16 run's losses follow the float32 run's
    /// (same seed, data and dropout) within 2% at every update, and both learn.
    func testBF16TrainingFollowsFloat32() throws {
        let corpus = try TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
        func losses(_ precision: Precision) throws -> [Float] {
            var options = TrainingOptions(batch: 4, seq: 64, steps: 30,
                                          schedule: LearningRateSchedule(kind: .cosine, peak: 3e-3, warmup: 5, total: 30, minimum: 3e-4),
                                          dataPath: sampleDataPath())
            options.precision = precision
            let config = ModelConfig(layers: 2, width: 64, heads: 4, vocab: 257, context: 64, dropout: 0.1)
            let trainer = try Trainer(model: try GPT(config: config, seed: 5), options: options, train: corpus.train, valid: corpus.valid)
            XCTAssertEqual(trainer.model.precision, precision)
            return try (0..<30).map { _ in try trainer.trainStep().loss }
        }
        let float = try losses(.fp32), half = try losses(.bf16)
        let worst = zip(float, half).map { abs($0 - $1) / $0 }.max()!
        print(String(format: "bf16 vs fp32 training losses over 30 updates: worst relative difference %.2e", worst))
        XCTAssertLessThan(worst, 2e-2)
        XCTAssertNotEqual(float, half)
        XCTAssertLessThan(half.last!, half.first! - 1)
    }
}
