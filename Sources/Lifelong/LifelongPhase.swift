import Communication
import Corpus
import Foundation
import Model
import Tensors
import Training

/// One phase of a lifelong stage as the `TrainingLoop` drives it: the function recovering warmup
/// (FRW: the previous domain's memory, replaying older ones) or the stage's training (its
/// domain, replaying all earlier ones), with replay decided per update from a seed every rank
/// shares (spec section 5), each micro-batch under its own domain's prompt. Its position lives
/// in the run's `LifelongState`, so a checkpoint anywhere in it resumes exactly.
final class LifelongPhase: TrainingPhase {
    private unowned let run: LifelongRun
    let stage: Int
    let kind: LifelongState.Phase
    /// The phase's updates as planned (`steps`); with a plateau policy the stage's budget is
    /// `steps` updates of the model it started with, and `updates` what that budget still pays for.
    let plannedSteps: Int
    private let options: TrainingOptions
    private let settings: StagePlan.Settings
    /// The domain trained on (the previous one in FRW) and the domains replayed.
    private let current: Int
    private let replay: [Int]
    private let own: SequenceLoader
    private let memories: [SequenceLoader]
    private(set) var flopsPerToken: Double
    /// Micro-batches replayed and run since the last progress line.
    private var replayed = 0, microBatches = 0
    private var trainer: Trainer { run.trainer }

    init(run: LifelongRun, stage i: Int, kind: LifelongState.Phase, steps: Int, options: TrainingOptions) throws {
        self.run = run
        stage = i
        self.kind = kind
        plannedSteps = steps
        self.options = options
        settings = run.plan.settings(ofStage: i)
        current = kind == .frw ? i - 1 : i
        replay = Array(0..<current)
        let seed = SeedStream.lifelongPhase(seed: run.plan.seed, stage: i, warmup: kind == .frw)
        let positions = run.state.loaders.isEmpty ? [LoaderPosition](repeating: LoaderPosition(), count: 1 + replay.count) : run.state.loaders
        let c = run.communicator, t = options.seq
        let domains = run.domains
        own = try SequenceLoader(stream: kind == .frw ? domains[current].memory : domains[current].train, seq: t, seed: seed,
                                 rank: c.rank, worldSize: c.size, position: positions[0])
        memories = try replay.enumerated().map { k, j in
            try SequenceLoader(stream: domains[j].memory, seq: t, seed: SeedStream.replayMemory(phaseSeed: seed, domain: j),
                               rank: c.rank, worldSize: c.size, position: positions[k + 1])
        }
        if run.state.adaptive == nil && settings.replay.weighting == .adaptive {
            run.state.adaptive = AdaptiveReplayWeights(domains: replay.count)
        }
        flopsPerToken = FLOPCount.trainingPerToken(run.trainer.model.config, parameters: run.trainer.model.parameterCount, seq: t)
    }

    /// The phase's first log line.
    var description: String {
        let r = settings.replay, names = run.domains.map(\.name)
        let replayText = replay.isEmpty ? "no replay (no earlier domain)"
            : String(format: "replay %.0f%% %@ of %@", 100 * r.ratio, r.weighting.rawValue, replay.map { names[$0] }.joined(separator: ", "))
        return String(format: "stage %d/%d %@ on %@: %d updates of %dx%d x %d micro-batch(es) x %d rank(s), lr %@, %@",
                      stage + 1, run.plan.stages.count, kind == .frw ? "warmup" : "training",
                      kind == .frw ? "\(names[current]) memory" : names[current],
                      updates, options.batch, options.seq, options.accumulation, run.communicator.size, "\(options.schedule)", replayText)
    }

    // MARK: TrainingPhase

    var completed: Int { run.state.stepInPhase }

    /// The policy's FLOP budget of this main phase: (FLOPs spent, budget, FLOPs per update of the
    /// model it started with), or nil without a policy.
    private var budget: FLOPBudget? {
        guard kind == .main, run.state.policy != nil, let start = run.state.phaseStartFLOPs,
              let unit = run.state.phaseUpdateFLOPs, unit > 0 else { return nil }
        return FLOPBudget(spent: run.state.flops - start, total: Double(plannedSteps) * unit, unit: unit)
    }

    var updates: Int { budget.map { run.state.stepInPhase + $0.updatesLeft(at: trainer.flopsPerUpdate) } ?? plannedSteps }

    /// The schedule's position: the update in the phase, or with a policy the FLOPs spent in
    /// updates of the plan's initial model (a growth makes each update advance it by the cost ratio).
    private var schedulePosition: Int { budget?.position ?? run.state.stepInPhase }
    var runStep: Int { trainer.step }
    var cadence: RunCadence {
        RunCadence(logEvery: settings.logEvery, evalEvery: settings.evalEvery, checkpointEvery: settings.checkpointEvery)
    }
    /// Stage and phase as the replay seed counts them.
    private var phaseIndex: Int { kind == .frw ? 2 * stage : 2 * stage + 1 }

    /// One update of G = ranks x accumulation global micro-batches: the replay decision covers
    /// all G (from a seed every rank shares), each loader gives its k-th micro-batch of the
    /// update its batch k, and every loader moves once the update is complete.
    func update() throws -> StepResult {
        let u = run.state.stepInPhase, b = options.batch, t = options.seq, G = trainer.globalMicroBatches
        let weights = run.state.adaptive?.weights ?? [Double](repeating: 1, count: replay.count)
        let decision = ReplayScheduler.decide(microBatches: G, ratio: settings.replay.ratio,
                                              weights: weights, seed: run.plan.seed, stage: phaseIndex, update: u)
        // Each global micro-batch's batch within its own loader, and how many each loader gives.
        var batchIndex = [Int](repeating: 0, count: G), replayed = [Int](repeating: 0, count: replay.count), fresh = 0
        for g in 0..<G {
            if let k = decision.sources[g] { batchIndex[g] = replayed[k]; replayed[k] += 1 } else { batchIndex[g] = fresh; fresh += 1 }
        }
        // Each micro-batch carries its own domain's prompt (the trainer places it per architecture).
        let prompt: ((Int) -> Int32?)? = settings.prompts
            ? { [domains = run.domains, replay, current] in domains[decision.sources[$0].map { replay[$0] } ?? current].prompt } : nil
        let result = try trainer.update(learningRate: options.schedule(schedulePosition), prompt: prompt) { [own, memories] g, inputs, targets in
            (decision.sources[g].map { memories[$0] } ?? own).fill(batch: batchIndex[g], size: b, inputs: inputs, targets: targets)
        }
        own.advance(batches: fresh, size: b)
        for (k, loader) in memories.enumerated() { loader.advance(batches: replayed[k], size: b) }
        for (k, count) in replayed.enumerated() where count > 0 { run.state.adaptive?.recordReplay(domain: k, tokens: count * b * t) }
        run.state.stepInPhase += 1
        run.state.flops += flopsPerToken * Double(result.tokens)
        run.state.loaders = [own.position] + memories.map(\.position)
        self.replayed += decision.replayed
        microBatches += G
        return result
    }

    /// Every `replay.interval` updates, adaptive replay re-weights the old domains by how much
    /// their validation loss moved per replayed token (spec section 5).
    func finishUpdate(_ result: StepResult) throws {
        guard let adaptive = run.state.adaptive, run.state.stepInPhase % settings.replay.interval == 0, !replay.isEmpty else { return }
        let losses = try replay.map { j in
            Double(try trainer.evaluate(run.domains[j].valid, batches: settings.replay.evalBatches,
                                        prompt: settings.prompts ? run.domains[j].prompt : nil) ?? 0)
        }
        var updated = adaptive
        updated.refresh(validLosses: losses, generous: kind == .frw || run.state.stepInPhase <= updates / 2)
        run.state.adaptive = updated
        run.output.metric(["event": "replay_weights", "stage": stage, "phase": kind.rawValue, "update": run.state.stepInPhase,
                           "step": trainer.step, "domains": replay.map { run.domains[$0].name }, "weights": updated.weights,
                           "valid_losses": losses])
    }

    func report(_ window: RunWindow, result: StepResult, last: Bool) -> (line: String, record: [String: Any])? {
        let share = microBatches > 0 ? Double(replayed) / Double(microBatches) : 0
        replayed = 0
        microBatches = 0
        let line = String(format: "stage %d/%d %@ %@ %d/%d | loss %.4f | lr %.2e | replay %.0f%% | %.0f tok/s | MFU %.0f%% | phase ETA %@",
                          stage + 1, run.plan.stages.count, run.domains[current].name, kind == .frw ? "warmup" : "train",
                          run.state.stepInPhase, updates, window.meanLoss, result.learningRate, 100 * share,
                          window.tokensPerSecond, 100 * window.mfu, formatDuration(window.secondsLeft))
        var record: [String: Any] = ["stage": stage, "phase": kind.rawValue, "update": run.state.stepInPhase, "step": trainer.step,
                                     "loss": window.meanLoss, "lr": Double(result.learningRate), "tokens_per_second": window.tokensPerSecond,
                                     "mfu": window.mfu, "replay_share": share, "flops": run.state.flops, "tokens": trainer.tokensSeen]
        if options.distillation != nil {
            record["kd_weight"] = Double(result.distillationWeight)
            record["stage_teacher_flops"] = trainer.teacherFLOPs
        }
        return (line, record)
    }

    func evaluate(last: Bool) throws {
        let seen = try run.perplexities(upTo: kind == .frw ? stage - 1 : stage)
        run.output.log("  valid perplexity: " + zip(run.domains, seen).map { String(format: "%@ %.2f", $0.0.name, $0.1) }.joined(separator: ", "))
        run.output.metric(["event": "eval", "stage": stage, "phase": kind.rawValue, "update": run.state.stepInPhase, "step": trainer.step,
                           "domains": run.names(upTo: seen.count - 1), "perplexities": seen, "flops": run.state.flops])
        guard kind == .main else { return }
        if !last { try checkPlateau(validLoss: Float(log(seen[stage]))) }
        let event = try trainer.applyTeacherRule(validLoss: Float(log(seen[stage])))
        guard event != .none, let bar = trainer.options.distillation?.teacherValidLoss else { return }
        run.output.log(String(format: "  stage %d: %@ on %@ (perplexity %.2f, teacher %.2f)", stage,
                              event == .started ? "the teacher is far enough ahead, distillation starts" : "the student passed the teacher, distillation ends",
                              run.domains[stage].name, seen[stage], exp(Double(bar))))
        run.output.metric(["event": event == .started ? "distillation_start" : "distillation_end", "stage": stage,
                           "update": run.state.stepInPhase, "step": trainer.step, "perplexity": seen[stage], "teacher_perplexity": exp(Double(bar))])
    }

    /// The plateau policy's check at a validation of the stage's domain, on the stage's own FLOP
    /// axis (docs/GROWTH.md, "When to grow"); a growth happens here, mid-stage.
    private func checkPlateau(validLoss: Float) throws {
        guard let budget, let policy = run.state.policy, let next = policy.next else { return }
        let before = trainer.model.config
        guard let (check, grown) = try trainer.checkPlateau(validLoss: validLoss, flops: budget.spent) else { return }
        run.state.policy = trainer.options.growthPolicy
        var record = check.record(step: trainer.step, flops: budget.spent, loss: validLoss, next: "\(next.layers)/\(next.width)/\(next.heads)")
        record["stage"] = stage
        record["update"] = run.state.stepInPhase
        run.output.metric(record)
        if let summary = check.summary(window: policy.window, next: next) { run.output.log("  plateau check: " + summary) }
        guard let grown else { return }
        flopsPerToken = FLOPCount.trainingPerToken(trainer.model.config, parameters: trainer.model.parameterCount, seq: options.seq)
        let seconds = grown.growSeconds + grown.broadcastSeconds + grown.verifySeconds
        run.output.note(String(format: "stage %d/%d update %d: grew on plateau %@ -> %@ in %.2f s (rank 0 grew, %d rank(s) verified XXH64 %016llx); the stage's budget now pays for %d more updates",
                               stage + 1, run.plan.stages.count, run.state.stepInPhase, "\(before)", "\(grown.config)", seconds,
                               run.communicator.size, grown.hash, updates - run.state.stepInPhase), step: trainer.step)
        run.output.metric(["event": "growth", "stage": stage, "update": run.state.stepInPhase, "step": trainer.step,
                           "config": "\(grown.config)", "policy": "plateau", "seconds": seconds, "flops": run.state.flops])
    }

    func checkpoint() throws {
        try run.saveCheckpoint(name: RunFolder.stepCheckpointName(trainer.step), keep: false)
    }

    func emergencyCheckpoint() throws -> String? {
        try run.saveLocalCheckpoint()
    }

    func nonFiniteLoss(_ result: StepResult) -> String {
        "loss became \(result.loss) at stage \(stage) \(kind.rawValue) update \(run.state.stepInPhase); lower lr or raise warmup"
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
}
