import Corpus
import Communication
import Finetune
import Foundation
import Model
import Tensors
import TestSupport
import XCTest

/// The tiny BERT of TESTING.md (2 layers, width 16, 2 heads, vocab 32, context 8; pad token 1).
func tinyBERT(dropout: Float = 0, seed: UInt64 = 11) throws -> BERT {
    var config = ModelConfig(architecture: .bert, layers: 2, width: 16, heads: 2, vocab: 32, context: 8, dropout: dropout)
    config.padToken = 1
    let model = try BERT(config: config, seed: seed)
    return model
}

/// Mean cross-entropy of the head's last logits in Float64 (the float32 per-row losses would add
/// their own rounding to the finite differences).
func meanCrossEntropy(_ head: ClassifierHead, labels: [Int32]) -> Double {
    var total = 0.0
    for (row, label) in labels.enumerated() {
        let logits = (0..<head.classes).map { Double(head.logits[row * head.classes + $0]) }
        let top = logits.max()!
        total += top + log(logits.map { exp($0 - top) }.reduce(0, +)) - logits[Int(label)]
    }
    return total / Double(labels.count)
}

final class ClassifierGradientTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    func assertNoMismatch(_ mismatches: [GradientMismatch], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssert(mismatches.isEmpty, mismatches.prefix(8).map(\.description).joined(separator: "\n"), file: file, line: line)
    }

    /// The head alone: parameters and the input vectors against central differences.
    func checkHead(dropout: Dropout?) {
        let b = 4, d = 16, c = 3
        let head = ClassifierHead(width: d, classes: c)
        fillUniform(head.parameters.pointer, head.parameterCount, scale: 0.4, seed: 21)
        let hidden = FloatBuffer(count: b * d)
        fillUniform(hidden.pointer, b * d, scale: 1.5, seed: 22)
        let labels: [Int32] = [0, 2, 1, 2]
        func loss() -> Double {
            head.forward(hidden: hidden.pointer, batch: b, labels: nil, dropout: dropout)
            return meanCrossEntropy(head, labels: labels)
        }
        head.zeroGradients()
        let sum = labels.withUnsafeBufferPointer { head.forward(hidden: hidden.pointer, batch: b, labels: $0.baseAddress!, dropout: dropout) }
        XCTAssertEqual(sum / Double(b), loss(), accuracy: 1e-5)
        _ = labels.withUnsafeBufferPointer { head.forward(hidden: hidden.pointer, batch: b, labels: $0.baseAddress!, dropout: dropout) }
        let dHidden = FloatBuffer(count: b * d)
        dHidden.pointer.update(from: head.backward(scale: 1 / Float(b)), count: b * d)
        let analytic = FloatBuffer(count: head.parameterCount)
        analytic.copy(from: head.gradients)
        var mismatches: [GradientMismatch] = []
        for (k, spec) in head.tensors.enumerated() {
            mismatches += FiniteDifference.check(spec.name, values: head.parameters.pointer + spec.offset,
                                                 analytic: analytic.pointer + spec.offset, count: spec.count,
                                                 samples: 30, seed: UInt64(40 + k), loss: loss)
        }
        mismatches += FiniteDifference.check("hidden", values: hidden.pointer, analytic: dHidden.pointer, count: b * d,
                                             samples: 40, seed: 50, loss: loss)
        assertNoMismatch(mismatches)
        // Every class bias gets gradient (softmax), and some input vectors do.
        XCTAssertTrue(head.tensors[3].range.allSatisfy { analytic[$0] != 0 })
        XCTAssertGreaterThan((0..<(b * d)).filter { dHidden[$0] != 0 }.count, b * d / 2)
    }

    func testHeadBackwardMatchesFiniteDifferences() { checkHead(dropout: nil) }
    func testHeadBackwardWithDropoutMatchesFiniteDifferences() { checkHead(dropout: Dropout(probability: 0.3, key: 9)) }

    /// The whole classifier: BERT encoder (begin-token rows only in its last block, padding in
    /// one sequence) and head, every parameter of both against central differences.
    func checkClassifier(dropout: Float) throws {
        let model = try tinyBERT(dropout: dropout)
        // Larger weights than at initialization so every path carries gradient; norm gains 1 +- 0.3.
        fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: 12)
        for spec in model.layout.tensors where spec.name.hasSuffix("ln.weight") || spec.name.hasSuffix("ln1.weight") || spec.name.hasSuffix("ln2.weight") {
            for i in spec.range { model.parameters[i] += 1 }
        }
        let head = ClassifierHead(width: 16, classes: 3)
        fillUniform(head.parameters.pointer, head.parameterCount, scale: 0.4, seed: 13)
        let b = 3, t = 8
        var tokens = randomTokens(b * t, vocab: 32, seed: 14).map { $0 == 1 ? 2 : $0 }
        for i in [t + 5, t + 6, t + 7] { tokens[i] = 1 }  // the second sequence is padded
        let labels: [Int32] = [2, 0, 1]
        let seed: UInt64? = dropout > 0 ? 77 : nil
        let headDropout = dropout > 0 ? Dropout(probability: dropout, key: 5) : nil
        func loss() -> Double {
            let hidden = model.encodeFirstPositions(tokens: tokens, batch: b, seq: t, dropoutSeed: seed)
            head.forward(hidden: hidden, batch: b, labels: nil, dropout: headDropout)
            return meanCrossEntropy(head, labels: labels)
        }
        model.zeroGradients()
        head.zeroGradients()
        let hidden = model.encodeFirstPositions(tokens: tokens, batch: b, seq: t, dropoutSeed: seed)
        _ = labels.withUnsafeBufferPointer { head.forward(hidden: hidden, batch: b, labels: $0.baseAddress!, dropout: headDropout) }
        model.backwardFirstPositions(head.backward(scale: 1 / Float(b)))
        let encoderGradients = FloatBuffer(count: model.parameterCount), headGradients = FloatBuffer(count: head.parameterCount)
        encoderGradients.copy(from: model.gradients)
        headGradients.copy(from: head.gradients)
        var mismatches: [GradientMismatch] = []
        for (k, spec) in model.layout.tensors.enumerated() {
            mismatches += FiniteDifference.check(spec.name, values: model.parameters.pointer + spec.offset,
                                                 analytic: encoderGradients.pointer + spec.offset, count: spec.count,
                                                 samples: 24, seed: UInt64(100 + k), loss: loss)
        }
        for (k, spec) in head.tensors.enumerated() {
            mismatches += FiniteDifference.check("classifier." + spec.name, values: head.parameters.pointer + spec.offset,
                                                 analytic: headGradients.pointer + spec.offset, count: spec.count,
                                                 samples: 24, seed: UInt64(200 + k), loss: loss)
        }
        assertNoMismatch(mismatches)
        // The encoder's first block and the embeddings get gradient; the MLM head none.
        let qkv = try XCTUnwrap(model.layout.tensor(named: "blocks.0.attn.qkv.weight"))
        XCTAssertTrue(qkv.range.contains { encoderGradients[$0] != 0 })
        let mlm = try XCTUnwrap(model.layout.tensor(named: "head.bias"))
        XCTAssertTrue(mlm.range.allSatisfy { encoderGradients[$0] == 0 })
    }

    func testClassifierOnBERTMatchesFiniteDifferences() throws { try checkClassifier(dropout: 0) }
    func testClassifierOnBERTWithDropoutMatchesFiniteDifferences() throws { try checkClassifier(dropout: 0.2) }
}

final class SequenceFormatTests: XCTestCase {
    func testPromptGoesAfterTheBeginTokenAndTextIsCut() {
        let prompted = SequenceFormat(beginToken: 30, prompt: 25, padToken: 1, seq: 6)
        XCTAssertEqual(prompted.sequence([5, 6, 7, 8, 9, 10]), [30, 25, 5, 6, 7, 8])
        XCTAssertEqual(prompted.sequence([5]), [30, 25, 5])
        XCTAssertEqual(prompted.sequence([]), [30, 25])
        let plain = SequenceFormat(beginToken: 30, prompt: nil, padToken: 1, seq: 6)
        XCTAssertEqual(plain.sequence([5, 6, 7, 8, 9, 10]), [30, 5, 6, 7, 8, 9])
        let batch = Buffer<Int32>(count: 8)
        SequenceFormat.fill([[30, 25, 5], [30, 25, 5, 6]], pad: 1, tokens: batch.pointer, seq: 4)
        XCTAssertEqual((0..<8).map { batch[$0] }, [30, 25, 5, 1, 30, 25, 5, 6])
    }

    /// With a real tokenizer: `EncodedSplit` puts `<|bos|>` and the domain's prompt token before
    /// the text's BPE tokens, as the masked-LM pre-training did.
    func testEncodedSplitUsesTheTokenizersPromptAndBeginTokens() throws {
        let folder = temporaryFolder("elle-finetune-tokenizer")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var options = PrepareOptions(raw: (sampleDataPath() as NSString).deletingLastPathComponent, out: folder,
                                     tokenizer: .train(vocabularySize: 400))
        options.trainBytes = 200_000
        options.domains = ["legal", "literature"]
        _ = try DataPreparer.prepare(options)
        let tokenizer = try BPETokenizer.load(folder + "/tokenizer.json")
        let prompt = try XCTUnwrap(tokenizer.promptId(domain: "legal"))
        let text = "The licensee shall not sublicense the software."
        let examples = [ClassificationTask.Example(text: text, label: 1)]
        let split = EncodedSplit(examples, tokenizer: tokenizer,
                                 format: SequenceFormat(beginToken: tokenizer.beginOfSequence, prompt: prompt, padToken: tokenizer.pad, seq: 12))
        let expected = [tokenizer.beginOfSequence, prompt] + tokenizer.encode(text).prefix(10)
        XCTAssertEqual(split.sequences[0], Array(expected))
        XCTAssertEqual(split.labels, [1])
        XCTAssertNotEqual(prompt, tokenizer.promptId(domain: "literature"))
    }
}

final class TaskFileTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-task") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func write(_ name: String, _ lines: [String]) {
        _ = FileManager.default.createFile(atPath: folder + "/" + name, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    func testFolderAndSingleFileTasks() throws {
        write("train.jsonl", [#"{"text": "a", "label": "y"}"#, #"{"text": "b", "label": "x"}"#, ""])
        write("dev.jsonl", [#"{"text": "c", "label": "x"}"#])
        write("test.jsonl", [#"{"text": "d", "label": "y"}"#])
        let task = try ClassificationTask(path: folder)
        XCTAssertEqual(task.labels, ["x", "y"])
        XCTAssertEqual(task.train, [.init(text: "a", label: 1), .init(text: "b", label: 0)])
        XCTAssertEqual(task.test, [.init(text: "d", label: 1)])
        write("all.jsonl", [#"{"text": "a", "label": 3, "split": "train"}"#, #"{"text": "b", "label": 1, "split": "train"}"#,
                            #"{"text": "c", "label": 1, "split": "dev"}"#, #"{"text": "d", "label": 3, "split": "test"}"#])
        let single = try ClassificationTask(path: folder + "/all.jsonl")
        XCTAssertEqual(single.labels, ["1", "3"])
        XCTAssertEqual(single.dev, [.init(text: "c", label: 0)])
    }

    func testBadLinesAreNamedByFileAndLine() throws {
        write("train.jsonl", [#"{"text": "a", "label": "y"}"#, #"{"text": "b", "label": "x"}"#])
        write("dev.jsonl", [#"{"text": "c", "label": "x"}"#, #"{"txt": "c", "label": "x"}"#])
        write("test.jsonl", [#"{"text": "d", "label": "z"}"#])
        XCTAssertThrowsError(try ClassificationTask(path: folder)) { error in
            XCTAssertEqual("\(error)", "\(folder)/dev.jsonl:2: field \"text\" is missing or not a string")
        }
        write("dev.jsonl", [#"{"text": "c", "label": "x"}"#])
        XCTAssertThrowsError(try ClassificationTask(path: folder)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(folder)/test.jsonl:1: label \"z\" does not occur in the train split"), "\(error)")
        }
        XCTAssertThrowsError(try ClassificationTask(path: folder + "/missing")) { error in
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
    }
}

final class FineTuningTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    func testScores() {
        // classes 0, 1, 2: F1 = 2/3, 2/3, 1 (class 2 neither present nor predicted).
        let s = ClassificationScores(predictions: [0, 0, 1, 1], labels: [0, 1, 1, 0], classes: 3)
        XCTAssertEqual(s.accuracy, 0.5)
        XCTAssertEqual(s.macroF1, (0.5 + 0.5 + 1) / 3, accuracy: 1e-12)
        let t = ClassificationScores(predictions: [2, 2, 1], labels: [2, 0, 1], classes: 3)
        // class 0: F1 0; class 1: 1; class 2: 2/3
        XCTAssertEqual(t.macroF1, (0 + 1 + 2.0 / 3) / 3, accuracy: 1e-12)
    }

    func testEarlyStoppingCountsEvaluationsWithoutGain() {
        var stopping = EarlyStopping(patience: 2)
        XCTAssertTrue(stopping.record(0.5, step: 10))
        XCTAssertFalse(stopping.record(0.5, step: 20))   // equal is no gain
        XCTAssertFalse(stopping.shouldStop)
        XCTAssertTrue(stopping.record(0.6, step: 30))
        XCTAssertFalse(stopping.record(0.55, step: 40))
        XCTAssertFalse(stopping.shouldStop)
        XCTAssertFalse(stopping.record(0.59, step: 50))
        XCTAssertTrue(stopping.shouldStop)
        XCTAssertEqual(stopping.best, 0.6)
        XCTAssertEqual(stopping.bestStep, 30)
    }

    /// Sequences of random tokens; the label says whether token 7 occurs (learnable by attention
    /// from the begin token).
    func syntheticSplit(_ n: Int, seed: UInt64) -> EncodedSplit {
        var rng = Xoshiro256(seed: seed)
        var sequences: [[Int32]] = [], labels: [Int32] = []
        for i in 0..<n {
            let length = 3 + rng.nextInt(below: 6)
            var s: [Int32] = [31] + (1..<length).map { _ in Int32(8 + rng.nextInt(below: 20)) }
            if i % 2 == 0 { s[1 + rng.nextInt(below: length - 1)] = 7 }
            sequences.append(s)
            labels.append(i % 2 == 0 ? 1 : 0)
        }
        return EncodedSplit(sequences: sequences, labels: labels)
    }

    /// Training learns the synthetic task, keeps the best dev weights, and stops once the dev
    /// score has not improved for `patience` evaluations.
    func testFineTuningLearnsKeepsTheBestWeightsAndStopsEarly() throws {
        let model = try tinyBERT(dropout: 0.1)
        let head = ClassifierHead(width: 16, classes: 2)
        head.initialize(seed: 3)
        var options = FineTuneOptions()
        options.batch = 8
        options.epochs = 40
        options.lr = 3e-3
        options.evalEvery = 5
        options.patience = 4
        let tuner = try FineTuner(model: model, head: head, options: options, communicator: SingleProcess())
        let train = syntheticSplit(64, seed: 1), dev = syntheticSplit(32, seed: 2)
        let result = try tuner.train(train, dev: dev)
        XCTAssertGreaterThan(result.bestDev.accuracy, 0.8, "\(result.devHistory)")
        XCTAssertEqual(result.devHistory.max(), result.bestDev.macroF1)
        // The kept weights are the best evaluation's.
        XCTAssertEqual(try tuner.evaluate(dev), result.bestDev)
        XCTAssertTrue(result.stoppedEarly, "\(result.devHistory)")
        XCTAssertEqual(result.updates, result.bestStep + options.patience * options.evalEvery)
        XCTAssertLessThan(result.updates, 40 * 8)
    }

    /// With a learning rate too small to change any prediction, the dev score never improves
    /// after the first evaluation: training stops after exactly 1 + patience evaluations.
    func testNoGainStopsAfterPatienceEvaluations() throws {
        let model = try tinyBERT()
        let head = ClassifierHead(width: 16, classes: 2)
        head.initialize(seed: 3)
        var options = FineTuneOptions()
        options.batch = 8
        options.epochs = 20
        options.lr = 1e-12
        options.evalEvery = 2
        options.patience = 3
        let tuner = try FineTuner(model: model, head: head, options: options, communicator: SingleProcess())
        let result = try tuner.train(syntheticSplit(32, seed: 1), dev: syntheticSplit(16, seed: 2))
        XCTAssertTrue(result.stoppedEarly)
        XCTAssertEqual(result.devHistory.count, 4)
        XCTAssertEqual(result.bestStep, 2)
        XCTAssertEqual(result.updates, 8)
    }
}
