import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// BERT through the Trainer: masked-LM batches from real text, learning, exact resume, the
/// options that tie a BERT to its masking. The byte-level sample text stands in for BPE data
/// here, with ids 257-259 reserved for pad, mask and bos (`elle train --model bert` itself takes
/// them from a prepared BPE tokenizer).
final class BERTTrainingTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    static let corpus = try! TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
    static let maskedLM = MaskedLM(beginToken: 259, maskToken: 258, padToken: 257, ordinaryTokens: 256)

    static func config(dropout: Float = 0.1) -> ModelConfig {
        var config = ModelConfig(architecture: .bert, layers: 2, width: 32, heads: 2, vocab: 260, context: 32, dropout: dropout)
        config.padToken = 257
        return config
    }

    func makeOptions(steps: Int, accumulation: Int = 2, lr: Float = 3e-3) -> TrainingOptions {
        var options = TrainingOptions(batch: 4, seq: 32, steps: steps,
                                      schedule: LearningRateSchedule(kind: .linear, peak: lr, warmup: 5, total: steps, minimum: 0),
                                      dataPath: sampleDataPath())
        options.accumulation = accumulation
        options.seed = 8
        options.maskedLM = Self.maskedLM
        return options
    }

    func makeTrainer(_ options: TrainingOptions, dropout: Float = 0.1) throws -> Trainer {
        try Trainer(model: try BERT(config: Self.config(dropout: dropout), seed: 4), options: options,
                    train: Self.corpus.train, valid: Self.corpus.valid)
    }

    /// The masked-LM validation loss starts near ln(V), falls by more than 1.5 nats in 80
    /// updates, and is the same number when evaluated twice (the validation masks are fixed).
    func testTrainingLowersMaskedValidationLoss() throws {
        let trainer = try makeTrainer(makeOptions(steps: 80, accumulation: 1), dropout: 0)
        let before = try XCTUnwrap(try trainer.evaluate())
        XCTAssertEqual(try trainer.evaluate(), before, "validation masks must not change between evaluations")
        var first: Float = 0, last: Float = 0
        for step in 0..<80 {
            let loss = try trainer.trainStep().loss
            if step == 0 { first = loss }
            last = loss
        }
        let after = try XCTUnwrap(try trainer.evaluate())
        print("BERT masked-LM loss: train \(first) -> \(last), validation \(before) -> \(after)")
        XCTAssertEqual(Double(before), log(260.0), accuracy: 0.3)
        XCTAssertLessThan(after, before - 1.5, "validation loss \(before) -> \(after)")
    }

    /// Stopping at update 4, checkpointing and resuming gives the losses and parameters of an
    /// uninterrupted run bit for bit (dropout, accumulation and dynamic masks in play: the masks
    /// are keyed by (seed, step, micro-batch), so there is nothing to save).
    func testResumeContinuesBitForBit() throws {
        let options = makeOptions(steps: 10)
        let straight = try makeTrainer(options)
        var expected: [UInt32] = []
        for _ in 0..<10 { expected.append(try straight.trainStep().loss.bitPattern) }

        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let first = try makeTrainer(options)
        var losses: [UInt32] = []
        for _ in 0..<4 { losses.append(try first.trainStep().loss.bitPattern) }
        try first.saveCheckpoint(in: folder)
        let resumed = try Trainer.resume(from: try XCTUnwrap(RunFolder(folder).latest),
                                         train: Self.corpus.train, valid: Self.corpus.valid)
        XCTAssertEqual(resumed.options.maskedLM, Self.maskedLM)
        XCTAssertEqual(resumed.model.config.architecture, .bert)
        XCTAssertEqual(resumed.model.config.padToken, 257)
        while resumed.step < 10 { losses.append(try resumed.trainStep().loss.bitPattern) }
        XCTAssertEqual(losses, expected)
        XCTAssertTrue(bitIdentical(resumed.model.parameters.pointer, straight.model.parameters.pointer, straight.model.parameterCount))
    }

    /// Masks change from update to update (dynamic): a run over a single window reads it at
    /// every update, and with a learning rate of 1e-9 the parameters barely move, so the losses
    /// differ only because the masks do.
    func testMasksAreDynamic() throws {
        var options = makeOptions(steps: 4, accumulation: 1, lr: 1e-9)
        options.batch = 1
        let oneWindow = Buffer<Int32>((0..<33).map { Self.corpus.train[$0] })
        let trainer = try Trainer(model: try BERT(config: Self.config(dropout: 0), seed: 4), options: options,
                                  train: oneWindow, valid: Self.corpus.valid)
        let losses = try (0..<3).map { _ in try trainer.trainStep().loss }
        print("one window, three updates: losses \(losses)")
        for (a, b) in [(0, 1), (1, 2), (0, 2)] { XCTAssertGreaterThan(abs(losses[a] - losses[b]), 1e-3, "losses \(losses)") }
    }

    func testOptionsTieTheArchitectureToItsMasking() throws {
        let gptConfig = ModelConfig(layers: 2, width: 32, heads: 2, vocab: 260, context: 32)
        var gpt = makeOptions(steps: 1)
        XCTAssertThrowsError(try gpt.validate(model: gptConfig)) { XCTAssertTrue("\($0)".contains("maskedLM is for BERT"), "\($0)") }
        gpt.maskedLM = nil
        XCTAssertNoThrow(try gpt.validate(model: gptConfig))
        XCTAssertThrowsError(try gpt.validate(model: Self.config())) { XCTAssertTrue("\($0)".contains("maskedLM is required for BERT"), "\($0)") }
        var tooSmall = makeOptions(steps: 1)
        tooSmall.maskedLM?.beginToken = 400
        XCTAssertThrowsError(try tooSmall.validate(model: Self.config())) { XCTAssertTrue("\($0)".contains("beginToken"), "\($0)") }
    }
}
