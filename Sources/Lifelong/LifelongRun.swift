import Corpus
import Communication
import Foundation
import Model
import Tensors
import Training

/// One stage plan carried out end to end (ELLE, spec sections 1-7): per stage, grow the model
/// (rank 0 grows, every rank receives and verifies), warm it up on the previous domain's memory
/// (FRW), train on the new domain while replaying memories of the earlier ones, then measure
/// perplexity on every seen domain. Each phase runs in the one `TrainingLoop` (`LifelongPhase`).
/// Checkpoints at stage ends, at the plan's cadence and on a stop hold the model, Adam and a
/// `LifelongState`, so `--resume` continues exactly.
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
    public let tokenizer: SubwordTokenizer
    public private(set) var trainer: Trainer
    /// Where the run stands; its phases advance it.
    public internal(set) var state: LifelongState
    public let output: RunOutput
    /// The one training loop every phase runs in (stop agreement, cadence, MFU).
    private let loop: TrainingLoop
    /// Checkpoints are written in the background; the loop pauses only to copy the state.
    private let writer = CheckpointWriter()
    private struct Stopped: Error {}

    /// Prepares a run: reads the data, checks it against the plan, and builds (or, with
    /// `resume`, reloads from `out`'s newest valid checkpoint) the model. Collective.
    /// `tensorboard` (default: the plan's) is the folder for TensorBoard event files.
    public init(plan: StagePlan, out: String, communicator: Communicator, resume: Bool, tensorboard: String? = nil,
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
        output = try RunOutput(folder: RunFolder(out), enabled: communicator.isRoot, append: resume,
                               tensorboard: tensorboard ?? plan.tensorboard, print: print)

        if resume {
            let (saved, path) = try RunFolder.readOnRoot(out, communicator: communicator)
            guard let restored = try LifelongState(checkpoint: saved.state) else {
                throw JobError("\(path) is not a lifelong checkpoint (no lifelong state); resume it with the command that wrote it")
            }
            trainer = try Trainer(model: try saved.model(path: path), options: saved.state.options, train: domains[0].train,
                                  valid: domains[0].valid, communicator: communicator, state: saved.state,
                                  moments: try saved.moments(path: path))
            try trainer.loadMomentShards(of: saved, path: path)
            state = restored
            if state.planRanks == nil { state.planRanks = saved.state.worldSize }
            output.restarted(atStep: trainer.step)
            guard state.stage <= plan.stages.count else {
                throw JobError("\(path) is at stage \(state.stage + 1), but the plan has \(plan.stages.count) stages; resume it with the plan that wrote it")
            }
            output.log(state.stage == plan.stages.count
                ? "resumed \(path): the plan is complete (all \(plan.stages.count) stages trained)"
                : "resumed \(path): stage \(state.stage) (\(plan.stages[state.stage].domain)), \(state.phase?.rawValue ?? "start"), update \(state.stepInPhase) of the phase")
            if let resplit = trainer.resplit { output.log("  same global batch: \(resplit)") }
        } else {
            var config = plan.model.config(vocab: tokenizer.vocabularySize)
            if config.architecture == .bert { config.padToken = tokenizer.pad }
            let options = plan.settings(ofStage: 0).trainingOptions(plan: plan, tokenizer: prepared.tokenizerPath, steps: 1,
                                                                    domain: domains[0].name, maskedLM: LifelongRun.maskedLM(plan: plan, tokenizer: tokenizer))
            let loadedTokenizer = tokenizer
            let model = try plan.initFrom.map { try LifelongRun.initialModel(from: $0, plan: plan, config: config, tokenizer: loadedTokenizer) }
                ?? makeModel(config: config, seed: plan.seed)
            trainer = try Trainer(model: model, options: options,
                                  train: domains[0].train, valid: domains[0].valid, communicator: communicator)
            state = LifelongState(domains: domains.map(\.name), ranks: communicator.size)
            state.policy = plan.growOnPlateau?.policy
            if let initFrom = plan.initFrom { output.log("initialized from \(initFrom): \(trainer.model.config)") }
        }
        loop = TrainingLoop(communicator: communicator, output: output, checkpointMinutes: plan.checkpointMinutes,
                            precision: plan.precision, writer: writer)
        try verifyDomainsAgree()
    }

    // MARK: running

    /// Runs the remaining stages; returns the perplexity matrix, or nil when the run stopped
    /// early (at `stopAfter` updates, or on SIGTERM/SIGINT) after writing a checkpoint from which
    /// `--resume` continues exactly. Collective.
    @discardableResult
    public func run(stopAfter: Int? = nil) throws -> PerplexityMatrix? {
        output.log("plan \(plan.name): \(plan.stages.count) stages (\(domains.map(\.name).joined(separator: " -> "))), model \(trainer.model.config), \(communicator.size) rank(s), \(Parallel.threads) thread(s) each")
        loop.stopAfter = stopAfter
        do {
            while state.stage < plan.stages.count {
                try runStage(state.stage)
            }
        } catch is Stopped {
            try writer.finish()
            output.log("stopped after update \(trainer.step); continue with --resume")
            return nil
        }
        try writer.finish()
        writeReport()
        let hash = try trainer.verifyReplicas()
        output.log(String(format: "parameters xxh64 %016llx, identical on %d rank(s)", hash, communicator.size))
        return state.matrix
    }

    private func runStage(_ i: Int) throws {
        let stage = plan.stages[i]
        if state.phase == nil {
            if let grow = stage.grow { try growBefore(stage: i, plan: grow) }
            startPhase(stage.frw != nil ? .frw : .main)
        }
        if state.phase == .frw, let frw = stage.frw {
            try runPhase(stage: i, phase: .frw, steps: frw.steps, peak: frw.lr)
            let after = try perplexities(upTo: i - 1)
            if var effect = state.growthEffects.last, effect.stage == i {
                effect.afterWarmup = after
                state.growthEffects[state.growthEffects.count - 1] = effect
            }
            output.metric(["event": "warmup_end", "stage": i, "step": trainer.step, "domains": names(upTo: i - 1), "perplexities": after,
                           "flops": state.flops])
            output.log("  perplexity of seen domains after warmup: " + zip(domains, after)
                .map { String(format: "%@ %.2f", $0.0.name, $0.1) }.joined(separator: ", "))
            startPhase(.main)
        }
        try runPhase(stage: i, phase: .main, steps: stage.steps, peak: nil)
        let row = try perplexities(upTo: i)
        state.matrix.record(stage: i, perplexities: row)
        let ap = state.matrix.averagePerplexity(after: i), apPlus = state.matrix.averageIncrease(after: i)
        output.note(String(format: "stage %d/%d (%@) done: ", i + 1, plan.stages.count, domains[i].name)
                    + zip(domains, row).map { String(format: "%@ %.2f", $0.0.name, $0.1) }.joined(separator: ", ")
                    + String(format: " | AP %.2f | AP+ %.2f", ap, apPlus), step: trainer.step)
        output.metric(["event": "stage_end", "stage": i, "step": trainer.step, "domain": domains[i].name,
                       "domains": names(upTo: i), "perplexities": row,
                       "ap": ap, "ap_plus": apPlus, "flops": state.flops])
        state.stage = i + 1
        state.phase = nil
        startPhase(nil)
        try saveCheckpoint(name: RunFolder.stageCheckpointName(stage: i, domain: domains[i].name), keep: true)
    }

    /// Stage i's growth (collective), with the seen domains' perplexity before and after it.
    private func growBefore(stage i: Int, plan grow: GrowthPlan) throws {
        let before = try perplexities(upTo: i - 1)
        let received = try trainer.grow(grow)
        let after = try perplexities(upTo: i - 1)
        state.growthEffects.append(.init(stage: i, before: before, afterGrowth: after, afterWarmup: nil))
        let seconds = received.growSeconds + received.broadcastSeconds + received.verifySeconds
        output.note(String(format: "stage %d/%d: grew to %@ in %.2f s (rank 0 grew, %d rank(s) verified XXH64 %016llx)",
                           i + 1, plan.stages.count, "\(received.config)", seconds, communicator.size, received.hash), step: trainer.step)
        output.log("  perplexity of seen domains before -> after growth: " + zip(before, after).enumerated()
            .map { String(format: "%@ %.2f -> %.2f", domains[$0.offset].name, $0.element.0, $0.element.1) }.joined(separator: ", "))
        output.metric(["event": "growth", "stage": i, "step": trainer.step, "config": "\(received.config)",
                       "domains": names(upTo: i - 1), "before": before,
                       "after": after, "seconds": seconds, "flops": state.flops])
    }

    /// Enters a phase (nil: between stages) at its first update.
    private func startPhase(_ phase: LifelongState.Phase?) {
        state.phase = phase
        state.stepInPhase = 0
        state.loaders = []
        state.adaptive = nil
    }

    /// Trains one phase: FRW (the previous domain's memory, replaying older ones) or the stage's
    /// domain (replaying all earlier ones), in the run loop. Optimizer and schedule restart with
    /// the phase unless the stage carries Adam's moments through its growth.
    private func runPhase(stage i: Int, phase: LifelongState.Phase, steps: Int, peak: Float?) throws {
        let current = phase == .frw ? i - 1 : i
        var options = plan.settings(ofStage: i).trainingOptions(plan: plan, tokenizer: trainer.options.tokenizer, steps: steps,
                                                                domain: domains[current].name,
                                                                maskedLM: LifelongRun.maskedLM(plan: plan, tokenizer: tokenizer))
        if let peak { options.schedule.peak = peak }
        // The plan's accumulation is per rank of the job that started the run.
        let planRanks = state.planRanks ?? communicator.size
        options.accumulation = try Trainer.accumulation(keeping: options.accumulation * planRanks, from: planRanks, on: communicator.size)
        let ki = phase == .main ? plan.stages[i].ki : nil
        if let ki {
            var kd = ki.options(startStep: trainer.step - state.stepInPhase, phaseSteps: steps)
            // A resumed phase keeps the `.teacher` rule's bar and decision from its checkpoint.
            if let saved = trainer.options.distillation, saved.startStep == kd.startStep {
                kd.teacherValidLoss = saved.teacherValidLoss
                kd.passedTeacherAtStep = saved.passedTeacherAtStep
                kd.startedAtStep = saved.startedAtStep
                kd.studentValidLoss = saved.studentValidLoss
            }
            options.distillation = kd
        }
        let starting = state.stepInPhase == 0 && state.loaders.isEmpty
        if phase == .main, var policy = state.policy {
            // Each stage's curve starts over: a new domain, and FLOPs counted from the stage's start.
            if starting { policy.points = [] }
            state.policy = policy
            options.growthPolicy = policy
        }
        let carry = plan.stages[i].grow?.moments == .carry && (phase == .frw || plan.stages[i].frw == nil)
        if starting || options != trainer.options {
            try trainer.reconfigure(options: options, freshOptimizer: starting && !carry)
        }
        if let ki {
            // `previous`: the previous stage's end checkpoint (the model before this stage's growth).
            let source = ki.teacher == "previous"
                ? RunFolder(out).file(RunFolder.stageCheckpointName(stage: i - 1, domain: domains[i - 1].name)) : ki.teacher
            try writer.finish()  // the previous stage's checkpoint is complete on disk
            let teacher = try Teacher.load(source, communicator: communicator)
            try trainer.attachTeacher(teacher)
            output.log("stage \(i): knowledge inheritance from \(ki.teacher == "previous" ? "the previous stage's model" : ki.teacher) \(teacher.model.config), \(ki.schedule) a_t over \(ki.steps ?? steps) updates, tau \(ki.temperature)\(ki.topK.map { ", top \($0)" } ?? "")")
            try trainer.measureTeacherValidation(domains[i].valid, prompt: plan.settings(ofStage: i).prompts ? domains[i].prompt : nil) { output.log($0) }
        }
        if phase == .main && state.policy != nil && starting {
            // A stage's steps count updates of the plan's initial model, whatever size the stage
            // starts at, so every stage of every plan with the same steps spends the same FLOPs.
            state.phaseStartFLOPs = state.flops
            state.phaseUpdateFLOPs = trainer.flopsPerUpdate(of: plan.model.config(vocab: trainer.model.config.vocab))
        }
        let runner = try LifelongPhase(run: self, stage: i, kind: phase, steps: steps, options: options)
        output.log(runner.description)
        if try loop.run(runner) == .stopped { throw Stopped() }
    }

    // MARK: measuring

    /// Names of domains 0...last: the labels of a record's per-domain lists.
    func names(upTo last: Int) -> [String] { domains.prefix(max(0, last + 1)).map(\.name) }

    /// Validation perplexity of domains 0...last (with their prompts when the stage uses them).
    public func perplexities(upTo last: Int) throws -> [Double] {
        guard last >= 0 else { return [] }
        let settings = plan.settings(ofStage: min(state.stage, plan.stages.count - 1))
        return try (0...last).map { j in
            let loss = try trainer.evaluate(domains[j].valid, batches: settings.evalBatches,
                                            prompt: settings.prompts ? domains[j].prompt : nil) ?? .nan
            return exp(Double(loss))
        }
    }

    // MARK: checkpoints

    /// Every checkpoint (collective); rank 0 writes `name` and points `latest` at it. Step
    /// checkpoints beyond the newest `plan.keepCheckpoints` are removed; stage ends are kept.
    func saveCheckpoint(name: String, keep: Bool) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        var checkpoint = try trainer.checkpoint()
        try communicator.verifySameFields([("lifelong", try state.encoded())], what: "lifelong run state")
        try trainer.writeMomentShards(in: RunFolder(out), name: name)
        guard communicator.isRoot else { return }
        checkpoint.state.lifelong = try JSONValue(encoding: state)
        let path = try writer.write(checkpoint, to: RunFolder(out), name: name, keepSteps: keep ? nil : plan.keepCheckpoints)
        output.log(String(format: "checkpoint %@ (training paused %.0f ms; the file is written in the background)",
                          path, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6))
    }

    /// The last completed update's checkpoint written by this rank alone (its peers are gone):
    /// `state` is only advanced once an update completes.
    func saveLocalCheckpoint() throws -> String? {
        try? writer.finish()
        guard var checkpoint = trainer.localCheckpoint() else { return nil }
        checkpoint.state.lifelong = try JSONValue(encoding: state)
        return try RunFolder(out).write(checkpoint, name: RunFolder.stepCheckpointName(trainer.step))
    }

    // MARK: set-up helpers

    /// The model of the checkpoint a plan starts from (`initFrom`): its shape must be the plan's
    /// `model`, its vocabulary the data's (ordinary tokens equal, at least the tokenizer's rows,
    /// which `elle import` gives an imported model), and it takes the plan's dropout.
    static func initialModel(from location: String, plan: StagePlan, config planned: ModelConfig,
                             tokenizer: SubwordTokenizer) throws -> LanguageModel {
        let (checkpoint, path) = try RunFolder.read(location)
        var config = checkpoint.config
        let checks: [(String, Any, Any)] = [("architecture", config.architecture, planned.architecture), ("layers", config.layers, planned.layers),
                                           ("width", config.width, planned.width), ("heads", config.heads, planned.heads),
                                           ("ffn", config.ffn, planned.ffn), ("context", config.context, planned.context)]
        for (field, have, want) in checks where "\(have)" != "\(want)" {
            throw PlanError(path: "plan", field: "model.\(field)", "is \(want), but the initFrom model \(path) has \(have)")
        }
        guard config.vocab >= tokenizer.vocabularySize else {
            throw PlanError(path: "plan", field: "initFrom", "\(path) has \(config.vocab) token rows, the data's tokenizer \(tokenizer.vocabularySize): import it with --tokenizer \(plan.data)/tokenizer.json")
        }
        let own = checkpoint.state.options.tokenizer
        if own != "bytes", FileManager.default.fileExists(atPath: own) {
            let theirs = try TokenizerFile.load(own)
            if let id = (0..<max(theirs.ordinaryCount, tokenizer.ordinaryCount)).first(where: { theirs.tokenText(Int32($0)) != tokenizer.tokenText(Int32($0)) }) {
                throw PlanError(path: "plan", field: "initFrom", "\(path) was trained with \(own), whose token \(id) is \(theirs.tokenText(Int32(id)).debugDescription) but \(tokenizer.tokenText(Int32(id)).debugDescription) in the data's tokenizer")
            }
        }
        config.dropout = planned.dropout
        if config.architecture == .bert { config.padToken = tokenizer.pad }
        return try makeModel(config: config, parameters: try checkpoint.model(path: path).parameters)
    }

    /// A BERT plan's masked-LM settings (the prompt is set per micro-batch), nil for GPT.
    static func maskedLM(plan: StagePlan, tokenizer: SubwordTokenizer) -> MaskedLM? {
        plan.model.architecture == .bert ? MaskedLM(tokenizer: tokenizer) : nil
    }

    /// Every split a stage reads must hold at least one global micro-batch of windows.
    static func checkData(plan: StagePlan, domains: [Domain], ranks: Int) throws {
        for (i, domain) in domains.enumerated() {
            let s = plan.settings(ofStage: i)
            let need = s.batch * ranks
            for (split, stream) in [("train", domain.train), ("memory", domain.memory), ("valid", domain.valid)] {
                let windows = stream.windowCount(seq: s.seq)
                if windows < (split == "valid" ? 1 : need) {
                    throw PlanError(path: "plan", field: "stages[\(i)]",
                                    "domain \(domain.name)'s \(split) split has \(windows) windows of \(s.seq) tokens; a micro-batch on \(ranks) rank(s) needs \(need): prepare more data or lower batch/seq")
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
}
