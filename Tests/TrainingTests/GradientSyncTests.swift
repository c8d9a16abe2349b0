import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// The Trainer's gradient path (`GradientSynchronizer`) on one process: buckets and the tied
/// embedding's rows taken out of backward must give the gradient plain backward gives.
final class GradientSyncTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    let config = ModelConfig(layers: 2, width: 32, heads: 2, vocab: 257, context: 32, dropout: 0.1)

    func options(accumulation: Int, bucketMB: Double?) -> TrainingOptions {
        var o = TrainingOptions(batch: 3, seq: 32, steps: 10, schedule: LearningRateSchedule(kind: .constant, peak: 3e-3),
                                dataPath: sampleDataPath())
        o.accumulation = accumulation
        o.seed = 8
        o.clip = nil
        o.bucketMB = bucketMB
        return o
    }

    /// One update of 2 micro-batches (dropout on): the loss and gradient norm the Trainer reports
    /// match a hand-written loop of plain forward/backward over the same batches and dropout
    /// seeds (same loss bits; norm within 1e-5 relative: only the token embedding's summation
    /// order differs).
    func testUpdateMatchesPlainBackward() throws {
        let corpus = try TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
        let o = options(accumulation: 2, bucketMB: 0.01)
        let trainer = try Trainer(model: try GPT(config: config, seed: 4), options: o, train: corpus.train, valid: corpus.valid)
        let result = try trainer.trainStep()

        let model = try GPT(config: config, seed: 4)
        let loader = try SequenceLoader(tokens: corpus.train, seq: o.seq, seed: o.seed)
        let inputs = Buffer<Int32>(count: o.batch * o.seq), targets = Buffer<Int32>(count: o.batch * o.seq)
        let sum = FloatBuffer(count: model.parameterCount)
        var loss = 0.0
        for micro in 0..<2 {
            loader.next(batch: o.batch, inputs: inputs.pointer, targets: targets.pointer)
            model.zeroGradients()
            loss += Double(model.forward(tokens: inputs.pointer, targets: targets.pointer, batch: o.batch, seq: o.seq,
                                         dropoutSeed: SplitMix64.mix(o.seed, 0xD50_0000, 0, UInt64(micro))))
            model.backward()
            addInPlace(sum.pointer, model.gradients.pointer, count: sum.count)
        }
        var squares = 0.0
        for i in 0..<sum.count { squares += Double(sum[i] / 2) * Double(sum[i] / 2) }
        XCTAssertEqual(result.loss, Float(loss / 2))
        XCTAssertEqual(Double(result.gradientNorm), squares.squareRoot(), accuracy: 1e-5 * squares.squareRoot())
    }

    /// Bucket size changes when collectives start, never the result: with 1 and 3 micro-batches,
    /// buckets of 25 MiB (one), 0.002 MiB (many, smaller than a tensor) and 0 (after backward)
    /// give bit-identical losses and parameters over 4 updates.
    func testBucketSizeDoesNotChangeResults() throws {
        let corpus = try TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
        for accumulation in [1, 3] {
            var reference: (losses: [UInt32], parameters: FloatBuffer)?
            for bucket: Double? in [nil, 0.002, 0] {
                let trainer = try Trainer(model: try GPT(config: config, seed: 4), options: options(accumulation: accumulation, bucketMB: bucket),
                                          train: corpus.train, valid: corpus.valid)
                var losses: [UInt32] = []
                for _ in 0..<4 { losses.append(try trainer.trainStep().loss.bitPattern) }
                if let reference {
                    XCTAssertEqual(losses, reference.losses, "bucket \(String(describing: bucket)), accumulation \(accumulation)")
                    XCTAssertTrue(bitIdentical(trainer.model.parameters.pointer, reference.parameters.pointer, reference.parameters.count),
                                  "parameters differ with bucket \(String(describing: bucket)), accumulation \(accumulation)")
                } else {
                    reference = (losses, trainer.model.parameters)
                }
            }
        }
    }

    func testNegativeBucketSizeIsRejected() throws {
        XCTAssertThrowsError(try options(accumulation: 1, bucketMB: -1).validate(model: config)) { error in
            XCTAssertTrue("\(error)".contains("bucket-mb"), "\(error)")
        }
    }
}
