import Communication
import Corpus
import Foundation
import Model
import Tensors

/// A plain run (`elle train` without a plan): one phase over one token stream, with an
/// optional scheduled growth (`options.growth`) and knowledge inheritance
/// (`options.distillation`), validated and checkpointed at the options' cadence and at the
/// end. Collective: every rank builds and runs it; rank 0 prints and writes.
public final class PlainRun: TrainingPhase {
    public let trainer: Trainer
    public let data: TrainingData
    public let folder: RunFolder
    public let output: RunOutput
    /// Checkpoints are written in the background; the loop pauses only to copy the state.
    private let writer = CheckpointWriter()
    private var communicator: Communicator { trainer.communicator }

    private init(trainer: Trainer, data: TrainingData, folder: RunFolder, resumed: Bool,
                 print: @escaping (String) -> Void) throws {
        self.trainer = trainer
        self.data = data
        self.folder = folder
        output = try RunOutput(folder: folder, enabled: trainer.communicator.isRoot, append: resumed,
                               tensorboard: trainer.options.tensorboard, print: print)
    }

    /// A new run on `options.dataPath`. `shape` gives the model's architecture and sizes (its
    /// vocabulary comes from the data's tokenizer and its context defaults to `options.seq`);
    /// with `initFrom` (a checkpoint or run folder) the model and, when it holds them, Adam's
    /// moments come from there instead. `growth` schedules a growth of the model it is given;
    /// `policy` lets the validation curve decide growths (`PlateauPolicy`).
    public static func start(options: TrainingOptions, shape: ModelConfig, initFrom: String?,
                             growth: (ModelConfig) throws -> ScheduledGrowth?,
                             policy: (ModelConfig) throws -> PlateauPolicy? = { _ in nil }, folder: String,
                             communicator: Communicator, print: @escaping (String) -> Void = { Swift.print($0) }) throws -> PlainRun {
        let data = try TrainingData(path: options.dataPath, domain: options.domain, validFraction: options.validFraction)
        var config = shape
        config.vocab = data.tokenizer.vocabularySize
        let initial = try initFrom.map { try RunFolder.read($0) }
        if let initial {
            config = initial.checkpoint.config
            config.dropout = shape.dropout
            if config.vocab < data.tokenizer.vocabularySize {
                throw JobError("--init-from: the model's vocabulary (\(config.vocab)) in \(initial.path) is smaller than the tokenizer's (\(data.tokenizer.vocabularySize))")
            }
        }
        var options = options
        options.tokenizer = data.tokenizerName
        options.domain = data.domain
        if config.architecture == .bert {
            guard let bpe = data.tokenizer as? SubwordTokenizer else {
                throw JobError("\(initial == nil ? "--model bert" : "the --init-from model is a BERT, which") needs a prepared data folder (elle data prepare): its tokenizer (BPE or WordPiece) has the begin, mask and pad tokens BERT uses (<|bos|>, <|mask|>, <|pad|>; WordPiece's [CLS], [MASK], [PAD]), and \(options.dataPath) is raw text, read as byte tokens without them")
            }
            config.padToken = bpe.pad
            options.maskedLM = MaskedLM(tokenizer: bpe)
        }
        options.growth = try growth(config)
        options.growthPolicy = try policy(config)
        if options.growthPolicy != nil && options.evalEvery <= 0 {
            throw ConfigError(field: "eval-every", message: "must be positive with --grow-on-plateau: the policy decides at validations")
        }
        let model = try initial.map { try makeModel(config: config, parameters: try $0.checkpoint.model(path: $0.path).parameters) }
            ?? makeModel(config: config, seed: options.seed)
        let moments = try initial.flatMap { try $0.checkpoint.moments(path: $0.path) }
        let trainer = try Trainer(model: model, options: options, train: data.train, valid: data.valid,
                                  communicator: communicator, state: nil, moments: moments)
        if let initial { try trainer.loadMomentShards(of: initial.checkpoint, path: initial.path) }
        let carried = moments != nil || initial?.checkpoint.state.momentShards != nil
        if let initial, carried { trainer.optimizer.step = initial.checkpoint.state.optimizerStep }
        let run = try PlainRun(trainer: trainer, data: data, folder: RunFolder(folder), resumed: false, print: print)
        if let initial {
            run.output.log("initialized from \(initial.path): \(carried ? "Adam moments carried (optimizer step \(trainer.optimizer.step))" : "fresh optimizer")")
        }
        run.output.log("data \(options.dataPath): \(data.summary)")
        return run
    }

    /// Continues the run in `folder` from its newest valid checkpoint (read by rank 0 and sent
    /// to the others) with the saved options, which `adjust` may change where a resumed run
    /// allows it (more steps, another copy of the data, bucket size).
    public static func resume(folder: String, communicator: Communicator, adjust: (inout TrainingOptions) -> Void = { _ in },
                              print: @escaping (String) -> Void = { Swift.print($0) }) throws -> PlainRun {
        let (saved, path) = try RunFolder.readOnRoot(folder, communicator: communicator)
        var options = saved.state.options
        adjust(&options)
        let data = try TrainingData(path: options.dataPath, domain: options.domain, validFraction: options.validFraction)
        let trainer = try Trainer.resume(from: saved, path: path, train: data.train, valid: data.valid,
                                         communicator: communicator, options: options)
        let run = try PlainRun(trainer: trainer, data: data, folder: RunFolder(folder), resumed: true, print: print)
        run.output.restarted(atStep: trainer.step)
        run.output.log("resumed \(path) at step \(trainer.step) of \(options.steps)")
        if let resplit = trainer.resplit { run.output.log("  same global batch: \(resplit)") }
        return run
    }

    /// Trains to the end of the schedule (or to `stopAfter` updates, or a stop signal: then with
    /// a checkpoint to resume from), prints the replicas' parameter hash and, for a GPT, a sample
    /// of `sampleTokens` tokens.
    @discardableResult
    public func run(stopAfter: Int? = nil, checkpointMinutes: Double = 0, sampleTokens: Int = 0) throws -> TrainingLoop.Outcome {
        printHeader()
        let loop = TrainingLoop(communicator: communicator, output: output, stopAfter: stopAfter, checkpointMinutes: checkpointMinutes,
                                precision: trainer.options.matrixPrecision, writer: writer)
        try redoMissedTeacherDecision()
        let outcome = try loop.run(self)
        try writer.finish()
        if outcome == .stopped { output.log("stopped after update \(trainer.step); continue with --resume") }
        let hash = try trainer.verifyReplicas()
        output.log(String(format: "parameters xxh64 %016llx, identical on %d rank(s)", hash, communicator.size))
        if sampleTokens > 0 {
            if trainer.model.config.architecture != .gpt {
                output.log("no sample: a \(trainer.model.config.architecture) model does not generate text")
            } else if communicator.isRoot {
                let text = Generator(model: trainer.model, tokenizer: data.tokenizer)
                    .generate(prompt: "\n", count: sampleTokens, temperature: 0.8, topK: 40, seed: trainer.options.seed)
                output.log("--- sample ---\n\(text)\n--------------")
            }
        }
        return outcome
    }

    private func printHeader() {
        let options = trainer.options, model = trainer.model
        output.log("model \(model.config), \(formatCount(model.parameterCount)) parameters")
        if let m = options.maskedLM {
            func percent(_ x: Float) -> String { "\(Int((x * 100).rounded()))%" }
            output.log("masked LM: <|bos|>\(m.prompt == nil ? "" : " and domain prompt") first, \(percent(m.maskProbability)) of positions predicted: \(percent(m.maskTokenShare)) shown as <|mask|>, \(percent(m.randomTokenShare)) as a random token, \(percent(1 - m.maskTokenShare - m.randomTokenShare)) unchanged")
        }
        if let growth = options.growth, trainer.step <= growth.step {
            let target = growth.plan.target(source: model.config)
            output.log("growth after update \(growth.step) to \(target) (\(formatCount(target.parameterCount)) parameters): \(growth.plan.summary)")
        }
        if let policy = options.growthPolicy, let next = policy.next {
            let sizes = policy.ladder[policy.grown...].map { "\($0.layers)/\($0.width)/\($0.heads)" }.joined(separator: " then ")
            output.log("growth on plateau to \(sizes), decided by rank 0 at every validation from the last \(policy.window) against the first \(policy.window) at each size: \(next.summary)")
            output.log(String(format: "FLOP budget %.3e (%d updates of the starting model); the schedule runs on FLOPs", Double(options.steps) * policy.flopsPerScheduleStep, options.steps))
        }
        output.log("training \(options.steps) updates of \(options.batch)x\(options.seq) tokens x \(options.accumulation) micro-batch(es) x \(communicator.size) rank(s), lr \(options.schedule), \(Parallel.threads) thread(s), BLAS kernel \(BLASInfo.coreName), \(GemmRules.describe(options.matrixPrecision))")
    }

    // MARK: TrainingPhase

    public var updates: Int { trainer.plannedUpdates }
    public var completed: Int { trainer.step }
    public var runStep: Int { trainer.step }
    public var cadence: RunCadence {
        let o = trainer.options
        return RunCadence(logEvery: o.logEvery, evalEvery: o.evalEvery, checkpointEvery: o.checkpointEvery,
                          evaluateAtEnd: true, checkpointAtEnd: true)
    }
    public var flopsPerToken: Double {
        FLOPCount.trainingPerToken(trainer.model.config, parameters: trainer.model.parameterCount, seq: trainer.options.seq)
    }

    /// A growth that is due happens here, reported and (when the run validates at all)
    /// followed by a validation, so the loss right after it can be compared with the one before.
    public func prepareUpdate() throws {
        let before = trainer.model.config
        guard let grown = try trainer.growIfDue(), let plan = trainer.options.growth?.plan else { return }
        try reportGrowth(grown, from: before, plan: plan)
    }

    /// The log lines and metrics of a growth (scheduled or decided by the policy), then, when the
    /// run validates at all, the validation loss right after it.
    private func reportGrowth(_ grown: ReceivedGrowth, from before: ModelConfig, plan: GrowthPlan) throws {
        let adam = grown.moments == nil ? "restarts" : "moments carried (step \(trainer.optimizer.step))"
        output.note(String(format: "step %6d | grew %@ -> %@ (%@ parameters): grow %.0f ms, broadcast %.0f ms, verify %.0f ms; xxh64 %016llx on %d rank(s); Adam %@",
                           trainer.step, "\(before)", "\(grown.config)", formatCount(grown.config.parameterCount),
                           grown.growSeconds * 1000, grown.broadcastSeconds * 1000, grown.verifySeconds * 1000,
                           grown.hash, communicator.size, adam), step: trainer.step)
        if let growth = grown.growth {
            for line in growth.describe(from: before, plan: plan) { output.log("  " + line) }
        }
        output.metric(["event": "growth", "step": trainer.step, "grown_to": "\(grown.config)", "parameters": grown.config.parameterCount,
                       "parameters_xxh64": String(format: "%016llx", grown.hash)])
        if trainer.options.evalEvery > 0, let valid = try trainer.evaluate() {
            output.log(String(format: "step %6d | valid loss after growth %.4f | perplexity %.2f", trainer.step, valid, exp(Double(valid))))
            output.metric(["event": "eval", "step": trainer.step, "valid_loss_after_growth": Double(valid)])
        }
    }

    public func update() throws -> StepResult { try trainer.trainStep() }

    public func report(_ window: RunWindow, result: StepResult, last: Bool) -> (line: String, record: [String: Any])? {
        let options = trainer.options
        let kd = options.distillation == nil ? "" : String(
            format: " | a_t %.3f ce %.4f | FLOPs student %.3e teacher %.3e", result.distillationWeight,
            window.meanCrossEntropy, trainer.flops, trainer.teacherFLOPs)
        let line = String(format: "step %6d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms/step | %.0f tok/s | MFU %.0f%%",
                          result.step, updates, window.meanLoss, result.learningRate, result.gradientNorm,
                          window.millisecondsPerStep, window.tokensPerSecond, 100 * window.mfu) + kd
        var record: [String: Any] = ["step": result.step, "loss": window.meanLoss, "lr": Double(result.learningRate),
                                     "grad_norm": Double(result.gradientNorm), "tokens_per_second": window.tokensPerSecond,
                                     "mfu": window.mfu, "tokens": trainer.tokensSeen]
        if options.distillation != nil {
            record["kd_weight"] = Double(result.distillationWeight)
            record["cross_entropy"] = window.meanCrossEntropy
        }
        return (line, record.merging(flopFields) { a, _ in a })
    }

    public func evaluate(last: Bool) throws {
        guard let valid = try trainer.evaluate() else { return }
        output.log(String(format: "step %6d | valid loss %.4f | perplexity %.2f", trainer.step, valid, exp(Double(valid))))
        output.metric(["event": "eval", "step": trainer.step, "valid_loss": Double(valid), "valid_perplexity": exp(Double(valid))]
                        .merging(flopFields) { a, _ in a })
        try checkPlateau(validLoss: valid, last: last)
        let event = try trainer.applyTeacherRule(validLoss: valid)
        guard event != .none, let bar = trainer.options.distillation?.teacherValidLoss else { return }
        let text = event == .started ? "the teacher is further ahead (valid loss %.4f against %.4f) than the student moved since the last validation: distillation starts"
            : "the student passed the teacher (valid loss %.4f <= %.4f): distillation ends, a_t = 0 from here"
        output.note(String(format: "step %6d | " + text, trainer.step, valid, bar), step: trainer.step)
        output.metric(["event": event == .started ? "distillation_start" : "distillation_end", "step": trainer.step,
                       "valid_loss": Double(valid), "teacher_valid_loss": Double(bar)])
    }

    /// The plateau policy's check at this validation (none at the run's last): its inputs and
    /// decision go to the log and to metrics.jsonl; a growth is reported like a scheduled one.
    private func checkPlateau(validLoss: Float, last: Bool) throws {
        guard !last, let policy = trainer.options.growthPolicy, let next = policy.next else { return }
        let before = trainer.model.config, flops = trainer.flops
        guard let (check, grown) = try trainer.checkPlateau(validLoss: validLoss) else { return }
        output.metric(check.record(step: trainer.step, flops: flops, loss: validLoss, next: "\(next.layers)/\(next.width)/\(next.heads)"))
        if let summary = check.summary(window: policy.window, next: next) {
            output.log(String(format: "step %6d | plateau check: ", trainer.step) + summary)
        }
        if let grown { try reportGrowth(grown, from: before, plan: next) }
    }

    /// A run resumed from a checkpoint written at a validation step before that validation's
    /// `.teacher` decision (an emergency checkpoint) makes the decision again, so it continues
    /// as the uninterrupted run would.
    private func redoMissedTeacherDecision() throws {
        let step = trainer.step, every = trainer.options.evalEvery
        guard step > 0, every > 0, step % every == 0, step < updates,
              trainer.options.distillation?.watchesTeacher(atStep: step) == true else { return }
        try evaluate(last: false)
    }

    public func checkpoint() throws {
        let start = DispatchTime.now().uptimeNanoseconds
        let checkpoint = try trainer.checkpoint()
        try trainer.writeMomentShards(in: folder, name: RunFolder.stepCheckpointName(trainer.step))
        guard communicator.isRoot else { return }
        let path = try writer.write(checkpoint, to: folder, name: RunFolder.stepCheckpointName(trainer.step))
        output.log(String(format: "checkpoint %@ (training paused %.0f ms; the file is written in the background)",
                          path, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6))
    }

    public func emergencyCheckpoint() throws -> String? {
        try? writer.finish()
        guard let checkpoint = trainer.localCheckpoint() else { return nil }
        return try folder.write(checkpoint, name: RunFolder.stepCheckpointName(trainer.step))
    }

    public func nonFiniteLoss(_ result: StepResult) -> String {
        "loss became \(result.loss) at step \(result.step); lower --lr or raise --warmup"
    }

    /// Student training FLOPs (saved in checkpoints) and, with KI, the teacher's forward FLOPs.
    private var flopFields: [String: Any] {
        trainer.options.distillation == nil ? ["flops": trainer.flops]
            : ["flops": trainer.flops, "teacher_flops": trainer.teacherFLOPs, "total_flops": trainer.flops + trainer.teacherFLOPs]
    }
}

/// A count for log lines: 1.23M, 45.6K.
public func formatCount(_ n: Int) -> String {
    n >= 1_000_000 ? String(format: "%.2fM", Double(n) / 1e6) : String(format: "%.1fK", Double(n) / 1e3)
}
