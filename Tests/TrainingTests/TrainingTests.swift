import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

final class TrainingTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    /// A tiny model memorizes one batch: loss < 0.1 within 300 updates.
    func testTinyModelOverfitsOneBatch() throws {
        let config = Tiny.config()
        let model = try GPT(config: config, seed: 3)
        let optimizer = AdamW(tensors: model.layout.tensors, count: model.parameterCount,
                              settings: AdamWSettings(beta1: 0.9, beta2: 0.98, epsilon: 1e-8, weightDecay: 0))
        let b = 4, t = config.context
        let tokens = randomTokens(b * t, vocab: config.vocab, seed: 4)
        let targets = randomTokens(b * t, vocab: config.vocab, seed: 5)
        var loss: Float = .infinity
        var steps = 0
        while steps < 300 && loss >= 0.1 {
            model.zeroGradients()
            loss = model.forward(tokens: tokens, targets: targets, batch: b, seq: t)
            model.backward()
            optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: 1e-2)
            steps += 1
        }
        XCTAssertLessThan(loss, 0.1, "loss \(loss) after \(steps) steps")
    }

    func makeOptions(steps: Int, accumulation: Int = 2) -> TrainingOptions {
        var options = TrainingOptions(batch: 3, seq: 32, steps: steps,
                                      schedule: LearningRateSchedule(kind: .cosine, peak: 3e-3, warmup: 3, total: steps, minimum: 3e-4),
                                      dataPath: sampleDataPath())
        options.accumulation = accumulation
        options.seed = 21
        return options
    }

    func makeTrainer(options: TrainingOptions, corpus: TextCorpus) throws -> Trainer {
        let config = ModelConfig(layers: 2, width: 32, heads: 2, vocab: 257, context: 32, dropout: 0.1)
        return try Trainer(model: try GPT(config: config, seed: 21), options: options, train: corpus.train, valid: corpus.valid)
    }

    /// Stopping at step 5, writing a checkpoint, and resuming from the file in a new trainer gives
    /// the same losses and final parameters, bit for bit, as an uninterrupted run (with dropout,
    /// gradient accumulation and a cosine schedule in play).
    func testResumeContinuesBitForBit() throws { try checkResume(precision: .fp32) }

    /// The same in bf16: the resumed run converts its weight copy from the checkpoint's float32
    /// parameters, which gives the bits AdamW wrote into the copy of the uninterrupted run.
    func testResumeContinuesBitForBitInBF16() throws { try checkResume(precision: .bf16) }

    func checkResume(precision: Precision) throws {
        let corpus = try TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
        var options = makeOptions(steps: 12)
        options.precision = precision
        let straight = try makeTrainer(options: options, corpus: corpus)
        var expected: [UInt32] = []
        for _ in 0..<12 { expected.append(try straight.trainStep().loss.bitPattern) }

        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let first = try makeTrainer(options: options, corpus: corpus)
        var losses: [UInt32] = []
        for _ in 0..<5 { losses.append(try first.trainStep().loss.bitPattern) }
        try first.saveCheckpoint(in: folder)
        let path = try XCTUnwrap(RunFolder(folder).latest)
        XCTAssertTrue(path.hasSuffix("step-00000005.ckpt"))

        let resumed = try Trainer.resume(from: path, train: corpus.train, valid: corpus.valid)
        XCTAssertEqual(resumed.step, 5)
        XCTAssertEqual(resumed.model.precision, precision)
        while resumed.step < 12 { losses.append(try resumed.trainStep().loss.bitPattern) }
        XCTAssertEqual(losses, expected)
        XCTAssertTrue(bitIdentical(resumed.model.parameters.pointer, straight.model.parameters.pointer, straight.model.parameterCount))
        XCTAssertTrue(bitIdentical(resumed.optimizer.v.pointer, straight.optimizer.v.pointer, straight.model.parameterCount))
    }

    func testTrainingLowersValidationLoss() throws {
        let corpus = try TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
        let trainer = try makeTrainer(options: makeOptions(steps: 60, accumulation: 1), corpus: corpus)
        let before = try XCTUnwrap(try trainer.evaluate())
        for _ in 0..<60 { _ = try trainer.trainStep() }
        let after = try XCTUnwrap(try trainer.evaluate())
        XCTAssertEqual(Double(before), log(257.0), accuracy: 0.2)
        XCTAssertLessThan(after, before - 1.5, "validation loss \(before) -> \(after)")
    }
}

final class CheckpointTests: XCTestCase {
    func makeCheckpoint() throws -> Checkpoint {
        let model = try GPT(config: Tiny.config(), seed: 1)
        let options = TrainingOptions(batch: 2, seq: 8, steps: 10, schedule: LearningRateSchedule(kind: .constant, peak: 1e-3), dataPath: "x")
        let state = TrainingState(step: 3, options: options, loaders: [LoaderPosition(epoch: 1, cursor: 4)],
                                  optimizerStep: 3, tokensSeen: 48, worldSize: 1)
        let m = FloatBuffer(count: model.parameterCount)
        fillUniform(m.pointer, m.count, seed: 2)
        return Checkpoint(config: model.config, state: state, tensors: [("parameters", model.parameters), ("adam.m", m)])
    }

    func testRoundTrip() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/a.ckpt"
        let original = try makeCheckpoint()
        try original.write(to: path)
        let loaded = try Checkpoint.read(from: path)
        XCTAssertEqual(loaded.config, original.config)
        XCTAssertEqual(loaded.state, original.state)
        XCTAssertEqual(loaded.tensors.map(\.name), ["parameters", "adam.m"])
        for (a, b) in zip(loaded.tensors, original.tensors) {
            XCTAssertTrue(bitIdentical(a.buffer.pointer, b.buffer.pointer, b.buffer.count))
        }
        // No temporary file is left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["a.ckpt"])
    }

    /// Flipping any one byte (header, tensor data, or trailer) is detected, with the path named.
    func testCorruptByteIsDetected() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/a.ckpt"
        try makeCheckpoint().write(to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        for position in [3, 9, 30, 400, bytes.count / 2, bytes.count - 20, bytes.count - 3] {
            var corrupt = bytes
            corrupt[position] ^= 0x10
            let bad = folder + "/bad.ckpt"
            try Data(corrupt).write(to: URL(fileURLWithPath: bad))
            XCTAssertThrowsError(try Checkpoint.read(from: bad), "byte \(position)") { error in
                XCTAssertTrue("\(error)".contains(bad), "\(error)")
            }
        }
        // Truncation and a missing file are reported too.
        let truncated = folder + "/truncated.ckpt"
        try Data(bytes[0..<(bytes.count / 2)]).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try Checkpoint.read(from: truncated)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        XCTAssertThrowsError(try Checkpoint.read(from: folder + "/missing.ckpt")) { XCTAssertTrue("\($0)".contains("missing.ckpt"), "\($0)") }
    }

    /// A write into a folder that does not exist fails with a message and leaves nothing behind.
    func testUnwritableFolderFailsCleanly() throws {
        XCTAssertThrowsError(try makeCheckpoint().write(to: "/nonexistent-elle-folder/a.ckpt")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent-elle-folder/a.ckpt"), "\(error)")
        }
    }
}

final class ScheduleTests: XCTestCase {
    func testSchedules() {
        let linear = LearningRateSchedule(kind: .linear, peak: 1, warmup: 10, total: 110)
        XCTAssertEqual(linear(0), 0.1, accuracy: 1e-6)
        XCTAssertEqual(linear(9), 1, accuracy: 1e-6)
        XCTAssertEqual(linear(60), 0.5, accuracy: 1e-6)
        XCTAssertEqual(linear(110), 0)
        XCTAssertEqual(linear(200), 0)

        let cosine = LearningRateSchedule(kind: .cosine, peak: 1, warmup: 0, total: 100, minimum: 0.1)
        XCTAssertEqual(cosine(0), 1, accuracy: 1e-6)
        XCTAssertEqual(cosine(50), 0.55, accuracy: 1e-6)
        XCTAssertEqual(cosine(100), 0.1, accuracy: 1e-6)

        let inverse = LearningRateSchedule(kind: .inverseSqrt, peak: 5e-4, warmup: 100, initial: 1e-7)
        XCTAssertEqual(inverse(0), 1e-7 + (5e-4 - 1e-7) / 100, accuracy: 1e-9)
        XCTAssertEqual(inverse(99), 5e-4, accuracy: 1e-9)
        XCTAssertEqual(inverse(399), 2.5e-4, accuracy: 1e-9)

        XCTAssertEqual(LearningRateSchedule(kind: .constant, peak: 0.3, warmup: 10)(0), 0.3)
    }
}
