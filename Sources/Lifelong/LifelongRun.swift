import Corpus
import Communication
import Foundation
import Model
import Tensors
import Training

/// One stage plan carried out end to end (ELLE, spec sections 1-7): per stage, grow the model
/// (rank 0 grows, every rank receives and verifies), warm it up on the previous domain's memory
/// (FRW), train on the new domain while replaying memories of the earlier ones, then measure
/// perplexity on every seen domain. Checkpoints at stage ends and every `checkpointEvery`
/// updates hold the model, Adam and a `LifelongState`, so `--resume` continues exactly.
///
/// Collective: every rank runs the same `run()`; only rank 0 prints and writes files.
public final class LifelongRun {
    /// One domain of the stream, in stage order.
    public struct Domain {
        public var name: String
        public var prompt: Int32
        public var train, valid, memory: TokenStream
    }

    public let plan: StagePlan
    public let out: String
    public let communicator: Communicator
    public let domains: [Domain]
    public let tokenizer: BPETokenizer
    public private(set) var trainer: Trainer
    public private(set) var state: LifelongState
    private let output: RunOutput
    /// This rank's SGEMM rate at start, GFLOP/s, for MFU.
    private let peakGFLOPS: Double
    private var stopAfter: Int?
    private struct Stopped: Error {}

    /// Prepares a run: reads the data, checks it against the plan, and builds (or, with
    /// `resume`, reloads from `out`'s newest checkpoint) the model. Collective.
    public init(plan: StagePlan, out: String, communicator: Communicator, resume: Bool,
                print: @escaping (String) -> Void = { Swift.print($0) }) throws {
        self.plan = plan
        self.out = out
        self.communicator = communicator
        let prepared: PreparedData
        do { prepared = try PreparedData(folder: plan.data) } catch {
            throw PlanError(path: "plan", field: "data", "\(error)")
        }
        tokenizer = try prepared.tokenizer()
        var domains: [Domain] = []
        for (i, stage) in plan.stages.enumerated() {
            let entry: DataManifest.Domain
            do { entry = try prepared.domain(stage.domain) } catch {
                throw PlanError(path: "plan", field: "stages[\(i)].domain",
                                "\(stage.domain) is not a domain of \(plan.data) (it has \(prepared.manifest.domains.map(\.name).joined(separator: ", ")))")
            }
            guard let prompt = entry.promptToken ?? tokenizer.promptId(domain: entry.name) else {
                throw PlanError(path: "plan", field: "stages[\(i)].domain", "\(entry.name) has no prompt token in \(prepared.tokenizerPath)")
            }
            domains.append(Domain(name: entry.name, prompt: prompt, train: try prepared.stream(entry.train),
                                  valid: try prepared.stream(entry.valid), memory: try prepared.stream(entry.memory)))
        }
        self.domains = domains
        try LifelongRun.checkData(plan: plan, domains: domains, ranks: communicator.size)
        output = RunOutput(folder: out, enabled: communicator.isRoot, append: resume, print: print)
        peakGFLOPS = LifelongRun.measurePeak()

        let first = plan.settings(ofStage: 0)
        let initialOptions = LifelongRun.options(first, plan: plan, tokenizer: prepared.tokenizerPath, steps: 1, domain: domains[0].name,
                                                 maskedLM: LifelongRun.maskedLM(plan: plan, tokenizer: tokenizer))
        if resume {
            let (saved, path) = try Checkpoint.readLatestOnRoot(in: out, communicator: communicator)
            guard let text = saved.state.lifelong, let restored = try? LifelongState.decode(text) else {
                throw JobError("\(path) is not a lifelong checkpoint (no lifelong state); resume it with the command that wrote it")
            }
            guard let parameters = saved.tensor("parameters") else { throw CheckpointError(path: path, "holds no parameters tensor") }
            let model = try makeModel(config: saved.config, parameters: parameters)
            let moments = saved.tensor("adam.m").flatMap { m in saved.tensor("adam.v").map { (m: m, v: $0) } }
            trainer = try Trainer(model: model, options: saved.state.options, train: domains[0].train, valid: domains[0].valid,
                                  communicator: communicator, state: saved.state, moments: moments)
            state = restored
            output.log("resumed \(path): stage \(state.stage) (\(plan.stages[state.stage].domain)), \(state.phase?.rawValue ?? "start"), update \(state.stepInPhase) of the phase")
        } else {
            var config = plan.model.config(vocab: tokenizer.vocabularySize)
            if config.architecture == .bert { config.padToken = tokenizer.pad }
            trainer = try Trainer(model: try makeModel(config: config, seed: plan.seed), options: initialOptions,
                                  train: domains[0].train, valid: domains[0].valid, communicator: communicator)
            state = LifelongState(domains: domains.map(\.name))
        }
        try verifyDomainsAgree()
    }

    // MARK: running

    /// Runs the remaining stages; returns the perplexity matrix, or nil when the run stopped
    /// early (at `stopAfter` updates, or on SIGTERM/SIGINT) after writing a checkpoint from which
    /// `--resume` continues exactly. Collective.
    @discardableResult
    public func run(stopAfter: Int? = nil) throws -> PerplexityMatrix? {
        output.log("plan \(plan.name): \(plan.stages.count) stages (\(domains.map(\.name).joined(separator: " -> "))), model \(trainer.model.config), \(communicator.size) rank(s), \(Parallel.threads) thread(s) each")
        self.stopAfter = stopAfter
        do {
            while state.stage < plan.stages.count {
                try runStage(state.stage)
            }
        } catch is Stopped {
            output.log("stopped after update \(trainer.step); continue with --resume")
            return nil
        }
        output.writeReport(matrix: state.matrix, effects: state.growthEffects, flops: state.flops, plan: plan)
        let hash = try trainer.verifyReplicas()
        output.log(String(format: "parameters xxh64 %016llx, identical on %d rank(s)", hash, communicator.size))
        return state.matrix
    }

    private func runStage(_ i: Int) throws {
        let stage = plan.stages[i]
        if state.phase == nil {
            if let grow = stage.grow {
                let before = try perplexities(upTo: i - 1)
                let received = try trainer.grow(grow)
                let after = try perplexities(upTo: i - 1)
                state.growthEffects.append(.init(stage: i, before: before, afterGrowth: after, afterWarmup: nil))
                output.log(String(format: "stage %d/%d: grew to %@ in %.2f s (rank 0 grew, %d rank(s) verified XXH64 %016llx)",
                                  i + 1, plan.stages.count, "\(received.config)", (received.growSeconds + received.broadcastSeconds + received.verifySeconds), communicator.size, received.hash))
                output.log("  perplexity of seen domains before -> after growth: " + zip(before, after).enumerated()
                    .map { String(format: "%@ %.2f -> %.2f", domains[$0.offset].name, $0.element.0, $0.element.1) }.joined(separator: ", "))
                output.metric(["event": "growth", "stage": i, "config": "\(received.config)", "before": before, "after": after,
                               "seconds": (received.growSeconds + received.broadcastSeconds + received.verifySeconds),
                               "flops": state.flops])
            }
            state.phase = stage.frw != nil ? .frw : .main
            state.stepInPhase = 0
            state.loaders = []
            state.adaptive = nil
        }
        if state.phase == .frw, let frw = stage.frw {
            try runPhase(stage: i, phase: .frw, steps: frw.steps, peak: frw.lr)
            let after = try perplexities(upTo: i - 1)
            if var effect = state.growthEffects.last, effect.stage == i {
                effect.afterWarmup = after
                state.growthEffects[state.growthEffects.count - 1] = effect
            }
            output.metric(["event": "warmup_end", "stage": i, "perplexities": after, "flops": state.flops])
            output.log("  perplexity of seen domains after warmup: " + zip(domains, after)
                .map { String(format: "%@ %.2f", $0.0.name, $0.1) }.joined(separator: ", "))
            state.phase = .main
            state.stepInPhase = 0
            state.loaders = []
            state.adaptive = nil
        }
        try runPhase(stage: i, phase: .main, steps: stage.steps, peak: nil)
        let row = try perplexities(upTo: i)
        state.matrix.record(stage: i, perplexities: row)
        output.log(String(format: "stage %d/%d (%@) done: ", i + 1, plan.stages.count, domains[i].name)
                   + zip(domains, row).map { String(format: "%@ %.2f", $0.0.name, $0.1) }.joined(separator: ", ")
                   + String(format: " | AP %.2f | AP+ %.2f", state.matrix.averagePerplexity(after: i), state.matrix.averageIncrease(after: i)))
        output.metric(["event": "stage_end", "stage": i, "domain": domains[i].name, "perplexities": row,
                       "ap": state.matrix.averagePerplexity(after: i), "ap_plus": state.matrix.averageIncrease(after: i),
                       "flops": state.flops])
        state.stage = i + 1
        state.phase = nil
        state.stepInPhase = 0
        state.loaders = []
        state.adaptive = nil
        try saveCheckpoint(name: String(format: "stage-%02d-%@.ckpt", i, domains[i].name), keep: true)
    }

    /// Trains one phase: FRW (the previous domain's memory, replaying older ones) or the stage's
    /// domain (replaying all earlier ones). Optimizer and schedule restart with the phase unless
    /// the stage carries Adam's moments through its growth.
    private func runPhase(stage i: Int, phase: LifelongState.Phase, steps: Int, peak: Float?) throws {
        let settings = plan.settings(ofStage: i)
        let current = phase == .frw ? i - 1 : i
        let stream = phase == .frw ? domains[current].memory : domains[current].train
        let replay = Array(0..<current)
        var options = LifelongRun.options(settings, plan: plan, tokenizer: trainer.options.tokenizer, steps: steps,
                                          domain: domains[current].name, maskedLM: LifelongRun.maskedLM(plan: plan, tokenizer: tokenizer))
        if let peak { options.schedule.peak = peak }
        let ki = phase == .main ? plan.stages[i].ki : nil
        if let ki { options.distillation = ki.options(startStep: trainer.step - state.stepInPhase) }
        let starting = state.stepInPhase == 0 && state.loaders.isEmpty
        let carry = plan.stages[i].grow?.moments == .carry && (phase == .frw || plan.stages[i].frw == nil)
        if starting || options != trainer.options {
            try trainer.reconfigure(options: options, freshOptimizer: starting && !carry)
        }
        if let ki {
            // `previous`: the previous stage's end checkpoint (the model before this stage's growth).
            let source = ki.teacher == "previous"
                ? (out as NSString).appendingPathComponent(String(format: "stage-%02d-%@.ckpt", i - 1, domains[i - 1].name)) : ki.teacher
            let teacher = try Teacher.load(source, communicator: communicator)
            try trainer.attachTeacher(teacher)
            output.log("stage \(i): knowledge inheritance from \(ki.teacher == "previous" ? "the previous stage's model" : ki.teacher) \(teacher.model.config), \(ki.schedule) a_t over \(ki.steps) updates, tau \(ki.temperature)\(ki.topK.map { ", top \($0)" } ?? "")")
        }
        let seed = SplitMix64.mix(plan.seed, UInt64(i), phase == .frw ? 1 : 2)
        let b = options.batch, t = options.seq
        let positions = state.loaders.isEmpty ? [LoaderPosition](repeating: LoaderPosition(), count: 1 + replay.count) : state.loaders
        let own = try SequenceLoader(stream: stream, seq: t, seed: seed, rank: communicator.rank,
                                     worldSize: communicator.size, position: positions[0])
        let memories = try replay.enumerated().map { k, j in
            try SequenceLoader(stream: domains[j].memory, seq: t, seed: SplitMix64.mix(seed, UInt64(j) + 1),
                               rank: communicator.rank, worldSize: communicator.size, position: positions[k + 1])
        }
        let replaySettings = settings.replay!
        if state.adaptive == nil && replaySettings.weighting == .adaptive { state.adaptive = AdaptiveReplayWeights(domains: replay.count) }
        let prompts = settings.prompts!
        let config = trainer.model.config
        let flopsPerToken = FLOPCount.trainingPerToken(config, parameters: trainer.model.parameterCount, seq: t)
        let replayText = replay.isEmpty ? "no replay (no earlier domain)"
            : String(format: "replay %.0f%% %@ of %@", 100 * replaySettings.ratio, replaySettings.weighting.rawValue,
                     replay.map { domains[$0].name }.joined(separator: ", "))
        output.log(String(format: "stage %d/%d %@ on %@: %d updates of %dx%d x %d micro-batch(es) x %d rank(s), lr %@, %@",
                          i + 1, plan.stages.count, phase == .frw ? "warmup" : "training",
                          phase == .frw ? "\(domains[current].name) memory" : domains[current].name,
                          steps, b, t, options.accumulation, communicator.size, "\(options.schedule)", replayText))
        var window = Window()
        let phaseIndex = phase == .frw ? 2 * i : 2 * i + 1
        while state.stepInPhase < steps {
            if try stopRequested() {
                try saveCheckpoint(name: String(format: "step-%08d.ckpt", trainer.step), keep: false)
                throw Stopped()
            }
            let u = state.stepInPhase
            let weights = state.adaptive?.weights ?? [Double](repeating: 1, count: replay.count)
            let decision = ReplayScheduler.decide(microBatches: options.accumulation, ratio: replaySettings.ratio,
                                                  weights: weights, seed: plan.seed, stage: phaseIndex, update: u)
            // Each micro-batch carries its own domain's prompt (the trainer places it per architecture).
            let prompt: ((Int) -> Int32?)? = prompts ? { [domains] in domains[decision.sources[$0].map { replay[$0] } ?? current].prompt } : nil
            let result = try trainer.update(learningRate: options.schedule(u), prompt: prompt) { micro, inputs, targets in
                (decision.sources[micro].map { memories[$0] } ?? own).next(batch: b, inputs: inputs, targets: targets)
            }
            for case let k? in decision.sources { state.adaptive?.recordReplay(domain: k, tokens: b * t * communicator.size) }
            state.stepInPhase += 1
            state.flops += flopsPerToken * Double(result.tokens)
            state.loaders = [own.position] + memories.map(\.position)
            guard result.loss.isFinite else {
                throw JobError("loss became \(result.loss) at stage \(i) \(phase.rawValue) update \(state.stepInPhase); lower lr or raise warmup")
            }
            window.add(result, replayed: decision.replayed, micro: options.accumulation)

            if let adaptive = state.adaptive, state.stepInPhase % replaySettings.interval == 0, !replay.isEmpty {
                let losses = try replay.map { j in
                    Double(try trainer.evaluate(domains[j].valid, batches: replaySettings.evalBatches,
                                                prompt: prompts ? domains[j].prompt : nil) ?? 0)
                }
                var updated = adaptive
                updated.refresh(validLosses: losses, generous: phase == .frw || state.stepInPhase <= steps / 2)
                state.adaptive = updated
                output.metric(["event": "replay_weights", "stage": i, "phase": phase.rawValue, "update": state.stepInPhase,
                               "weights": updated.weights, "valid_losses": losses])
            }
            let last = state.stepInPhase == steps
            if state.stepInPhase % trainer.options.logEvery == 0 || last {
                let seconds = window.seconds
                let rate = Double(window.tokens) / seconds
                let mfu = rate * flopsPerToken / (peakGFLOPS * 1e9 * Double(communicator.size))
                let remaining = Double(steps - state.stepInPhase) * seconds / Double(window.steps)
                output.progress(String(format: "stage %d/%d %@ %@ %d/%d | loss %.4f | lr %.2e | replay %.0f%% | %.0f tok/s | MFU %.0f%% | phase ETA %@",
                                       i + 1, plan.stages.count, domains[current].name, phase == .frw ? "warmup" : "train",
                                       state.stepInPhase, steps, window.meanLoss, result.learningRate,
                                       100 * window.replayShare, rate, 100 * mfu, formatDuration(remaining)), final: last)
                output.metric(["stage": i, "phase": phase.rawValue, "update": state.stepInPhase, "step": trainer.step,
                               "loss": window.meanLoss, "lr": Double(result.learningRate), "tokens_per_second": rate,
                               "mfu": mfu, "replay_share": window.replayShare, "flops": state.flops, "tokens": trainer.tokensSeen]
                              .merging(ki == nil ? [:] : ["kd_weight": Double(result.distillationWeight),
                                                          "stage_teacher_flops": trainer.teacherFLOPs]) { a, _ in a })
                window = Window()
            }
            if settings.evalEvery! > 0 && state.stepInPhase % settings.evalEvery! == 0 && !last {
                let seen = try perplexities(upTo: phase == .frw ? i - 1 : i)
                output.log("  valid perplexity: " + zip(domains, seen).map { String(format: "%@ %.2f", $0.0.name, $0.1) }.joined(separator: ", "))
                output.metric(["event": "eval", "stage": i, "phase": phase.rawValue, "update": state.stepInPhase, "perplexities": seen,
                               "flops": state.flops])
            }
            if settings.checkpointEvery! > 0 && state.stepInPhase % settings.checkpointEvery! == 0 && !last {
                try saveCheckpoint(name: String(format: "step-%08d.ckpt", trainer.step), keep: false)
            }
        }
    }

    /// Whether to stop before the next update: `stopAfter` reached or a stop signal on any
    /// rank (the ranks agree, so they stop at the same update).
    private func stopRequested() throws -> Bool {
        var stop = (stopAfter.map { trainer.step >= $0 } ?? false) || StopSignal.requested
        if communicator.size > 1 {
            stop = try communicator.allReduce(Int64(stop ? 1 : 0), .max, label: "stop agreement before update \(trainer.step + 1)") > 0
        }
        return stop
    }

    // MARK: measuring

    /// Validation perplexity of domains 0...last (with their prompts when the stage uses them).
    public func perplexities(upTo last: Int) throws -> [Double] {
        guard last >= 0 else { return [] }
        let settings = plan.settings(ofStage: min(state.stage, plan.stages.count - 1))
        return try (0...last).map { j in
            let loss = try trainer.evaluate(domains[j].valid, batches: settings.evalBatches!,
                                            prompt: settings.prompts! ? domains[j].prompt : nil) ?? .nan
            return exp(Double(loss))
        }
    }

    // MARK: checkpoints

    /// Every checkpoint (collective); rank 0 writes `name` and points `latest` at it. Step
    /// checkpoints beyond the newest `plan.keepCheckpoints` are removed; stage ends are kept.
    private func saveCheckpoint(name: String, keep: Bool) throws {
        var checkpoint = try trainer.checkpoint()
        try communicator.verifySameFields([("lifelong", try state.encoded())], what: "lifelong run state")
        guard communicator.isRoot else { return }
        checkpoint.state.lifelong = try state.encoded()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let path = (out as NSString).appendingPathComponent(name)
        try checkpoint.write(to: path)
        try writeFileAtomically(name + "\n", to: (out as NSString).appendingPathComponent("latest"))
        output.log("checkpoint \(path)")
        if !keep {
            let steps = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [])
                .filter { $0.hasPrefix("step-") && $0.hasSuffix(".ckpt") }.sorted()
            for old in steps.dropLast(plan.keepCheckpoints) { try? FileManager.default.removeItem(atPath: (out as NSString).appendingPathComponent(old)) }
        }
    }

    // MARK: set-up helpers

    /// Training options of a phase from resolved stage settings.
    static func options(_ s: StagePlan.Settings, plan: StagePlan, tokenizer: String, steps: Int, domain: String,
                        maskedLM: MaskedLM?) -> TrainingOptions {
        let warmup = Int((s.warmup! * Double(steps)).rounded())
        let schedule = LearningRateSchedule(kind: s.schedule!, peak: s.lr!, warmup: warmup, total: steps,
                                            minimum: s.minLr!, initial: s.schedule == .inverseSqrt ? 1e-7 : 0)
        var options = TrainingOptions(batch: s.batch!, seq: s.seq!, steps: steps, schedule: schedule, dataPath: plan.data)
        options.accumulation = s.accumulation!
        options.adam = AdamWSettings(beta1: s.beta1!, beta2: s.beta2!, epsilon: s.epsilon!, weightDecay: s.weightDecay!)
        options.clip = s.clip! > 0 ? s.clip! : nil
        options.seed = plan.seed
        options.logEvery = s.logEvery!
        options.evalBatches = s.evalBatches!
        options.tokenizer = tokenizer
        options.domain = domain
        options.maskedLM = maskedLM
        return options
    }

    /// A BERT plan's masked-LM settings (the prompt is set per micro-batch), nil for GPT.
    static func maskedLM(plan: StagePlan, tokenizer: BPETokenizer) -> MaskedLM? {
        plan.model.architecture == .bert ? MaskedLM(tokenizer: tokenizer) : nil
    }

    /// Every split a stage reads must hold at least one global micro-batch of windows.
    static func checkData(plan: StagePlan, domains: [Domain], ranks: Int) throws {
        for (i, domain) in domains.enumerated() {
            let s = plan.settings(ofStage: i)
            let need = s.batch! * ranks
            for (split, stream) in [("train", domain.train), ("memory", domain.memory), ("valid", domain.valid)] {
                let windows = stream.windowCount(seq: s.seq!)
                if windows < (split == "valid" ? 1 : need) {
                    throw PlanError(path: "plan", field: "stages[\(i)]",
                                    "domain \(domain.name)'s \(split) split has \(windows) windows of \(s.seq!) tokens; a micro-batch on \(ranks) rank(s) needs \(need): prepare more data or lower batch/seq")
                }
            }
        }
    }

    /// Every rank must read the same data: token counts and hashes of every split, compared.
    private func verifyDomainsAgree() throws {
        guard communicator.size > 1 else { return }
        var fields: [(name: String, value: String)] = []
        for d in domains {
            for (split, stream) in [("train", d.train), ("valid", d.valid), ("memory", d.memory)] {
                fields.append(("\(d.name).\(split)", String(format: "%d tokens %016llx", stream.count, stream.contentHash)))
            }
        }
        try communicator.verifySameFields(fields, what: "lifelong data")
    }

    /// A short SGEMM probe (GFLOP/s of this rank's threads at 1024^3) as the peak for MFU.
    static func measurePeak() -> Double {
        let n = 1024
        let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
        for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.01; b[i] = Float(i % 5) * 0.01 }
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            gemm(transA: false, transB: false, m: n, n: n, k: n, a.pointer, lda: n, b.pointer, ldb: n, beta: 0, c.pointer, ldc: n)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * Double(n * n * n) / best / 1e9
    }
}

/// Loss, tokens and time of the updates since the last log line.
struct Window {
    var steps = 0, tokens = 0, seconds = 0.0, lossSum = 0.0, replayed = 0, micro = 0
    mutating func add(_ r: StepResult, replayed: Int, micro: Int) {
        steps += 1; tokens += r.tokens; seconds += r.seconds; lossSum += Double(r.loss)
        self.replayed += replayed; self.micro += micro
    }
    var meanLoss: Double { steps > 0 ? lossSum / Double(steps) : 0 }
    var replayShare: Double { micro > 0 ? Double(replayed) / Double(micro) : 0 }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
}
