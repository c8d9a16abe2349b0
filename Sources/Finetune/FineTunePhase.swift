import Foundation
import Tensors
import Training

/// Fine-tuning as the `TrainingLoop` drives it: epochs of shuffled batches (the order a function of
/// the seed and the epoch), the dev split's macro-F1 every `evalEvery` updates (or epoch) and
/// at the end, the best weights kept, and an early stop after `patience` evaluations without a
/// gain. Progress lines come with the evaluations. No checkpoints: a fine-tuning run is short,
/// and a stop keeps the best weights so far.
final class FineTunePhase: TrainingPhase {
    private unowned let tuner: FineTuner
    private let train: EncodedSplit, dev: EncodedSplit
    private let log: (String) -> Void
    private let output: RunOutput
    let perEpoch: Int
    let updates: Int
    private let schedule: LearningRateSchedule
    private(set) var stopping: EarlyStopping
    private(set) var history: [Double] = []
    private(set) var bestScores: ClassificationScores
    let bestEncoder: FloatBuffer, bestHead: FloatBuffer
    private var order: (epoch: Int, indices: [Int]) = (-1, [])
    private var lossSum = 0.0, lossCount = 0

    init(tuner: FineTuner, train: EncodedSplit, dev: EncodedSplit, output: RunOutput, log: @escaping (String) -> Void) {
        self.tuner = tuner
        self.output = output
        self.train = train
        self.dev = dev
        self.log = log
        let options = tuner.options
        perEpoch = (train.count + options.batch - 1) / options.batch
        updates = perEpoch * options.epochs
        schedule = LearningRateSchedule(kind: .linear, peak: options.lr, warmup: Int((options.warmup * Double(updates)).rounded()),
                                        total: updates)
        stopping = EarlyStopping(patience: options.patience)
        bestScores = ClassificationScores(predictions: [], labels: [], classes: tuner.head.classes)
        bestEncoder = FloatBuffer(count: tuner.model.parameterCount)
        bestHead = FloatBuffer(count: tuner.head.parameterCount)
        bestEncoder.copy(from: tuner.model.parameters)
        bestHead.copy(from: tuner.head.parameters)
    }

    var completed: Int { tuner.step }
    var runStep: Int { tuner.step }
    var finishedEarly: Bool { stopping.shouldStop }
    var flopsPerToken: Double { 0 }
    var cadence: RunCadence {
        let every = tuner.options.evalEvery > 0 ? tuner.options.evalEvery : perEpoch
        return RunCadence(logEvery: every, evalEvery: every, evaluateAtEnd: true)
    }

    func update() throws -> StepResult {
        let start = DispatchTime.now().uptimeNanoseconds
        let step = tuner.step, epoch = step / perEpoch, first = (step % perEpoch) * tuner.options.batch
        if order.epoch != epoch {
            order = (epoch, FineTuner.permutation(train.count, seed: SeedStream.finetuneEpoch(seed: tuner.options.seed, epoch: epoch)))
        }
        let batch = Array(order.indices[first..<min(first + tuner.options.batch, train.count)])
        let lr = schedule(step)
        let loss = try tuner.update(batch.map { train.sequences[$0] }, labels: batch.map { train.labels[$0] }, lr: lr)
        lossSum += loss
        lossCount += 1
        let tokens = batch.reduce(0) { $0 + train.sequences[$1].count }
        return StepResult(step: tuner.step, loss: Float(loss), learningRate: lr, gradientNorm: 0, tokens: tokens,
                          seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    /// Progress is reported with each evaluation (`evaluate`).
    func report(_ window: RunWindow, result: StepResult, last: Bool) -> (line: String, record: [String: Any])? { nil }

    func evaluate(last: Bool) throws {
        let step = tuner.step
        let scores = try tuner.evaluate(dev)
        history.append(scores.macroF1)
        let improved = stopping.record(scores.macroF1, step: step)
        if improved {
            bestScores = scores
            bestEncoder.copy(from: tuner.model.parameters)
            bestHead.copy(from: tuner.head.parameters)
        }
        log(String(format: "epoch %.2f update %d/%d | train loss %.4f | lr %.2e | dev accuracy %.4f macro-F1 %.4f%@",
                   Double(step) / Double(perEpoch), step, updates, lossSum / Double(max(1, lossCount)), schedule(step - 1),
                   scores.accuracy, scores.macroF1, improved ? " (best)" : ""))
        output.metric(["event": "dev", "step": step, "epoch": Double(step) / Double(perEpoch),
                       "train_loss": lossSum / Double(max(1, lossCount)), "lr": Double(schedule(step - 1)),
                       "accuracy": scores.accuracy, "macro_f1": scores.macroF1])
        lossSum = 0
        lossCount = 0
        if stopping.shouldStop {
            log("early stop: no dev gain in \(tuner.options.patience) evaluations; best at update \(stopping.bestStep)")
        }
    }

    func checkpoint() throws {}
    func emergencyCheckpoint() throws -> String? { nil }

    func nonFiniteLoss(_ result: StepResult) -> String {
        "fine-tuning loss became \(result.loss) at update \(result.step); lower --lr"
    }
}
