import Communication
import Foundation
import Model
import Tensors
import Training

/// Accuracy and macro-F1 of predictions against labels.
public struct ClassificationScores: Codable, Equatable, Sendable {
    public var accuracy: Double
    /// Mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class that is neither present nor
    /// predicted counts as 1 (it was never confused), as in scikit-learn with zero_division=1.
    public var macroF1: Double
    public var count: Int

    public init(predictions: [Int], labels: [Int], classes: Int) {
        precondition(predictions.count == labels.count)
        var tp = [Int](repeating: 0, count: classes), fp = tp, fn = tp
        var correct = 0
        for (p, y) in zip(predictions, labels) {
            if p == y { tp[y] += 1; correct += 1 } else { fp[p] += 1; fn[y] += 1 }
        }
        count = labels.count
        accuracy = count > 0 ? Double(correct) / Double(count) : 0
        macroF1 = (0..<classes).map { k in
            let denominator = 2 * tp[k] + fp[k] + fn[k]
            return denominator == 0 ? 1 : 2 * Double(tp[k]) / Double(denominator)
        }.reduce(0, +) / Double(classes)
    }
}

/// Early stopping on a dev score (higher is better): training stops after `patience`
/// evaluations in a row without a strict improvement of the best score.
public struct EarlyStopping: Codable, Equatable, Sendable {
    public var patience: Int
    public private(set) var best = -Double.infinity
    public private(set) var bestStep = 0
    public private(set) var sinceBest = 0

    public init(patience: Int) { self.patience = patience }

    /// Records the score after update `step`; returns whether it is a new best (keep these weights).
    public mutating func record(_ score: Double, step: Int) -> Bool {
        if score > best {
            best = score
            bestStep = step
            sinceBest = 0
            return true
        }
        sinceBest += 1
        return false
    }

    public var shouldStop: Bool { sinceBest >= patience }
}

/// Fine-tuning settings.
public struct FineTuneOptions: Codable, Equatable, Sendable {
    /// Examples per update over all ranks (each rank takes every size-th of them).
    public var batch = 16
    public var epochs = 10
    public var lr: Float = 3e-4
    /// Linear warmup as a fraction of all updates, then linear decay to 0.
    public var warmup = 0.1
    public var adam = AdamWSettings(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01)
    /// Dropout on the pooled vector (the encoder uses its config's dropout).
    public var headDropout: Float = 0.1
    /// Dev evaluations without improvement before stopping.
    public var patience = 3
    /// Updates between dev evaluations (0: once per epoch).
    public var evalEvery = 0
    public var seed: UInt64 = 1

    public init() {}
}

/// What a fine-tuning run did.
public struct FineTuneResult: Codable, Sendable {
    public var updates: Int
    public var epochs: Double
    public var stoppedEarly: Bool
    public var bestDev: ClassificationScores
    public var bestStep: Int
    public var devHistory: [Double]
}

/// Fine-tunes a BERT encoder and a `ClassifierHead` together on classification examples: the
/// begin-token vector of each sequence feeds the head; every weight trains with AdamW, linear
/// warmup and decay; the dev split's macro-F1 is measured every `evalEvery` updates (or epoch),
/// the best weights are kept and training stops early after `patience` evaluations without a
/// gain. Data parallel like the `Trainer`: every rank runs its share of each batch, gradients
/// are all-reduced (summed, then every rank applies the same AdamW step). Collective.
public final class FineTuner {
    public let model: BERT
    public let head: ClassifierHead
    public let options: FineTuneOptions
    public let communicator: Communicator
    private let encoderOptimizer: AdamW
    private let headOptimizer: AdamW
    public private(set) var step = 0
    private var tokens = Buffer<Int32>(count: 0)
    private var labels = Buffer<Int32>(count: 0)

    public init(model: BERT, head: ClassifierHead, options: FineTuneOptions, communicator: Communicator) throws {
        guard model.config.padToken != nil else {
            throw ConfigError(field: "padToken", message: "is not set: the BERT must know its padding token to classify padded batches")
        }
        self.model = model
        self.head = head
        self.options = options
        self.communicator = communicator
        encoderOptimizer = AdamW(tensors: model.tensors, count: model.parameterCount, settings: options.adam)
        headOptimizer = AdamW(tensors: head.tensors, count: head.parameterCount, settings: options.adam)
        if communicator.size > 1 {
            try communicator.broadcast(model.parameters, label: "encoder parameter broadcast from rank 0")
            model.parametersChanged()
            try communicator.broadcast(head.parameters, label: "classifier head broadcast from rank 0")
        }
    }

    /// Trains on `train`, early-stopping on `dev`, in the run loop (`FineTunePhase`); leaves the
    /// best dev weights in the model and head. `log` receives progress lines (call it on rank 0
    /// only, if at all). A stop signal ends training early with the best weights so far. With
    /// `tensorboard`, rank 0 writes each evaluation's scores there (`event` dev).
    public func train(_ train: EncodedSplit, dev: EncodedSplit, tensorboard: String? = nil,
                      log: @escaping (String) -> Void = { _ in }) throws -> FineTuneResult {
        let output = try RunOutput(folder: nil, enabled: true, append: false, print: log)
        if let tensorboard, communicator.isRoot { output.add(try TensorBoardSink(folder: tensorboard, resumed: false)) }
        let phase = FineTunePhase(tuner: self, train: train, dev: dev, output: output, log: log)
        _ = try TrainingLoop(communicator: communicator, output: output).run(phase)
        model.parameters.copy(from: phase.bestEncoder)
        head.parameters.copy(from: phase.bestHead)
        if communicator.size > 1 {
            _ = try communicator.verifyIdentical(model.parameters.rawBytes, what: "fine-tuned encoder parameters")
            _ = try communicator.verifyIdentical(head.parameters.rawBytes, what: "fine-tuned classifier head")
        }
        return FineTuneResult(updates: step, epochs: Double(step) / Double(phase.perEpoch), stoppedEarly: phase.finishedEarly,
                              bestDev: phase.bestScores, bestStep: phase.stopping.bestStep, devHistory: phase.history)
    }

    /// One update on a global batch (every rank passes the same one and runs rows rank, rank +
    /// size, ...). Returns the batch's mean loss.
    func update(_ sequences: [[Int32]], labels batchLabels: [Int32], lr: Float) throws -> Double {
        precondition(!sequences.isEmpty, "an empty batch")
        let global = sequences.count
        let mine = Array(stride(from: communicator.rank, to: global, by: communicator.size))
        model.zeroGradients()
        head.zeroGradients()
        var lossSum = 0.0
        if !mine.isEmpty {
            let b = mine.count, t = Self.length(of: mine.map { sequences[$0] }, limit: model.config.context)
            prepare(rows: b, seq: t)
            SequenceFormat.fill(mine.map { sequences[$0] }, pad: model.config.padToken!, tokens: tokens.pointer, seq: t)
            for (r, i) in mine.enumerated() { labels[r] = batchLabels[i] }
            let dropoutSeed = SeedStream.finetuneDropout(seed: options.seed, step: step, rank: communicator.rank)
            let hidden = model.encodeFirstPositions(tokens: tokens.pointer, batch: b, seq: t, dropoutSeed: dropoutSeed)
            let headDropout = options.headDropout > 0
                ? Dropout(probability: options.headDropout, key: UInt32(truncatingIfNeeded: SeedStream.classifierDropout(dropoutSeed))) : nil
            lossSum = head.forward(hidden: hidden, batch: b, labels: labels.pointer, dropout: headDropout)
            model.backwardFirstPositions(head.backward(scale: 1 / Float(global)))
        }
        if communicator.size > 1 {
            try communicator.allReduce(model.gradients, .sum, label: "encoder gradient all-reduce of fine-tuning update \(step + 1)")
            try communicator.allReduce(head.gradients, .sum, label: "head gradient all-reduce of fine-tuning update \(step + 1)")
            lossSum = try communicator.allReduce(lossSum, .sum, label: "loss all-reduce of fine-tuning update \(step + 1)")
        }
        encoderOptimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: lr, weightCopy: model.weightCopy)
        headOptimizer.update(parameters: head.parameters, gradients: head.gradients, learningRate: lr)
        step += 1
        return lossSum / Double(global)
    }

    /// Predicted classes of every example (no dropout). Batches are dealt to ranks round-robin
    /// and the predictions all-reduced. Collective.
    public func predict(_ split: EncodedSplit) throws -> [Int] {
        let all = Buffer<Double>(count: max(1, split.count))
        all.zero()
        let b = options.batch
        for batch in stride(from: communicator.rank, to: (split.count + b - 1) / b, by: communicator.size) {
            let rows = Array((batch * b)..<min(batch * b + b, split.count))
            let t = Self.length(of: rows.map { split.sequences[$0] }, limit: model.config.context)
            prepare(rows: rows.count, seq: t)
            SequenceFormat.fill(rows.map { split.sequences[$0] }, pad: model.config.padToken!, tokens: tokens.pointer, seq: t)
            let hidden = model.encodeFirstPositions(tokens: tokens.pointer, batch: rows.count, seq: t, dropoutSeed: nil)
            head.forward(hidden: hidden, batch: rows.count, labels: nil, dropout: nil)
            for (r, k) in head.predictions().enumerated() { all[rows[r]] = Double(k) }
        }
        if communicator.size > 1 { try communicator.allReduce(all, .sum, label: "prediction all-reduce after fine-tuning update \(step)") }
        return (0..<split.count).map { Int(all[$0]) }
    }

    /// Accuracy and macro-F1 on a split. Collective.
    public func evaluate(_ split: EncodedSplit) throws -> ClassificationScores {
        ClassificationScores(predictions: try predict(split), labels: split.labels.map(Int.init), classes: head.classes)
    }

    /// A batch's sequence length: its longest sequence, rounded up to a multiple of 8 (fewer
    /// activation shapes), at most `limit`.
    static func length(of sequences: [[Int32]], limit: Int) -> Int {
        let longest = sequences.map(\.count).max() ?? 1
        return min(limit, (longest + 7) / 8 * 8)
    }

    /// A uniformly random order of 0..<n (Fisher-Yates), the same on every rank.
    static func permutation(_ n: Int, seed: UInt64) -> [Int] {
        var order = Array(0..<n)
        var rng = Xoshiro256(seed: seed)
        for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        return order
    }

    private func prepare(rows: Int, seq: Int) {
        if tokens.count < rows * seq { tokens = Buffer<Int32>(count: rows * seq) }
        if labels.count < rows { labels = Buffer<Int32>(count: rows) }
    }
}

