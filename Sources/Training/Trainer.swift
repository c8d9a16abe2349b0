import Corpus
import Communication
import Foundation
import Model
import Tensors

/// What one update did.
public struct StepResult: Sendable {
    public var step: Int
    public var loss: Float
    public var learningRate: Float
    public var gradientNorm: Float
    public var tokens: Int
    public var seconds: Double
    /// Time spent after backward waiting for the gradient all-reduces (what overlap did not hide).
    public var communicationWaitSeconds: Double = 0
    /// The knowledge-inheritance weight a_t of this update (0 without KI) and the mean
    /// cross-entropy (equal to `loss` when a_t = 0).
    public var distillationWeight: Float = 0
    public var crossEntropy: Float = 0
}

/// Plain single-domain training: micro-batches from a `SequenceLoader`, gradient accumulation,
/// clipping, AdamW, periodic validation and checkpoints; data-parallel over `communicator`.
///
/// Each micro-batch's gradient is computed on its own and then added to the update's sum; the
/// sum is all-reduced across ranks and scaled once by 1 / (micro-batches * ranks): so 1 rank x 2
/// micro-batches and 2 ranks x 1 give the same bits. Every rank then applies the same AdamW step.
/// The all-reduce runs in buckets during the last micro-batch's backward (`GradientSynchronizer`,
/// `options.bucketMB`).
///
/// Every method that talks to other ranks (`init`, `trainStep`, `evaluate`, `verifyReplicas`,
/// `checkpoint`, `saveCheckpoint`, `grow`, `growIfDue`) is collective: all ranks call it at the
/// same point.
///
/// `grow` replaces `model` and `optimizer` by grown ones between two updates; step, data position
/// and learning-rate schedule continue.
public final class Trainer {
    public private(set) var model: LanguageModel
    public private(set) var optimizer: AdamW
    public private(set) var options: TrainingOptions
    public let communicator: Communicator
    public private(set) var step: Int
    public private(set) var tokensSeen: Int
    /// Training FLOPs of the student so far on all ranks (6 N + 12 L D T per token, BERT's head at its predicted share: `FLOPCount`),
    /// at the model's size when each update ran (so growth is counted right); saved in checkpoints.
    public private(set) var flops: Double
    let loader: SequenceLoader
    let validTokens: TokenStream
    private var inputs: Buffer<Int32>
    private var targets: Buffer<Int32>
    /// Sum of micro-batch gradients when accumulating (nil with one micro-batch per update).
    private var gradientSum: FloatBuffer?
    /// Sums the gradient across ranks, overlapped with backward.
    private let synchronizer: GradientSynchronizer
    /// The step of the last growth, so a scheduled growth is applied once.
    private var grownAtStep: Int?
    /// Knowledge inheritance (`options.distillation`): the live teacher or its top-K cache
    /// (`attachTeacher`, `attachTeacherCache`). Updates with a_t = 0 never touch them, so they
    /// are exactly plain training.
    public private(set) var teacher: Teacher?
    public private(set) var teacherCache: TeacherCache?
    private let distillationLoss = DistillationLoss()
    /// This rank's window indices of the micro-batch being filled by `trainStep` (for the cache).
    private var windows: Buffer<Int32>
    private var windowsFilled = false
    private var cachedIds = Buffer<Int32>(count: 0)
    private var cachedLogits = FloatBuffer(count: 0)
    /// Compare a hash of the parameters across ranks every N updates (0: only before
    /// checkpoints). A mismatch means the replicas diverged and ends the job naming the rank.
    public var replicaCheckEvery = 100

    /// A fresh run on tokens in memory.
    public convenience init(model: LanguageModel, options: TrainingOptions, train: Buffer<Int32>, valid: Buffer<Int32>,
                            communicator: Communicator = SingleProcess()) throws {
        try self.init(model: model, options: options, train: TokenStream(train), valid: TokenStream(valid),
                      communicator: communicator, state: nil, moments: nil)
    }

    /// A fresh run on a token stream (e.g. memory-mapped shards).
    public convenience init(model: LanguageModel, options: TrainingOptions, train: TokenStream, valid: TokenStream,
                            communicator: Communicator = SingleProcess()) throws {
        try self.init(model: model, options: options, train: train, valid: valid,
                      communicator: communicator, state: nil, moments: nil)
    }

    /// A run continued from a checkpoint's tensors and state.
    public init(model: LanguageModel, options: TrainingOptions, train: TokenStream, valid: TokenStream,
                communicator: Communicator, state: TrainingState?, moments: (m: FloatBuffer, v: FloatBuffer)?) throws {
        try options.validate(model: model.config)
        model.precision = options.matrixPrecision
        self.model = model
        self.options = options
        self.communicator = communicator
        optimizer = AdamW(tensors: model.tensors, count: model.parameterCount, settings: options.adam)
        if let moments {
            optimizer.m.copy(from: moments.m)
            optimizer.v.copy(from: moments.v)
        }
        if let state {
            guard state.worldSize == communicator.size, state.loaders.count == state.worldSize else {
                throw JobError("the checkpoint was written by a job of \(state.worldSize) rank(s) but this job has \(communicator.size); "
                               + "resume with the same number of ranks (each rank continues its own data position)")
            }
            step = state.step
            tokensSeen = state.tokensSeen
            flops = state.flops ?? Double(state.tokensSeen) * FLOPCount.trainingPerToken(model.config, parameters: model.parameterCount, seq: options.seq)
            optimizer.step = state.optimizerStep
        } else {
            step = 0
            tokensSeen = 0
            flops = 0
        }
        loader = try SequenceLoader(stream: train, seq: options.seq, seed: options.seed,
                                    rank: communicator.rank, worldSize: communicator.size,
                                    position: state?.loaders[communicator.rank] ?? LoaderPosition())
        validTokens = valid
        inputs = Buffer(count: options.batch * options.seq)
        targets = Buffer(count: options.batch * options.seq)
        windows = Buffer(count: options.batch)
        gradientSum = options.accumulation > 1 ? FloatBuffer(count: model.parameterCount) : nil
        synchronizer = GradientSynchronizer(communicator: communicator, bucketElements: options.bucketElements)
        try synchronizeReplicas(train: train, resuming: moments != nil)
    }

    /// Makes every rank start from rank 0's run: the configuration, options and data must agree
    /// (a mismatch names the rank and the field), then rank 0's parameters (and, on resume, Adam
    /// moments) are broadcast.
    private func synchronizeReplicas(train: TokenStream, resuming: Bool) throws {
        guard communicator.size > 1 else { return }
        var fields = try flatFields(model.config, prefix: "model")
        // The data path may differ between nodes; what must agree is the tokens it holds.
        fields += try flatFields(options, prefix: "options").filter { $0.name != "options.dataPath" }
        fields += [("data.trainTokens", "\(train.count)"), ("data.validTokens", "\(validTokens.count)"),
                   ("data.trainXXH64", String(format: "%016llx", train.contentHash)),
                   ("data.validXXH64", String(format: "%016llx", validTokens.contentHash)),
                   ("resume.step", "\(step)"), ("resume.optimizerStep", "\(optimizer.step)")]
        try communicator.verifySameFields(fields, what: "run configuration")
        try communicator.broadcast(model.parameters, label: "parameter broadcast from rank 0")
        model.parametersChanged()
        if resuming {
            try communicator.broadcast(optimizer.m, label: "Adam first-moment broadcast from rank 0")
            try communicator.broadcast(optimizer.v, label: "Adam second-moment broadcast from rank 0")
        }
    }

    /// Runs one update on the run's own data at the schedule's rate: accumulation micro-batches
    /// on each rank, gradient average over all of them, clipping, AdamW. The loss returned is
    /// the mean over every rank's micro-batches.
    public func trainStep() throws -> StepResult {
        defer { windowsFilled = false }
        return try update(learningRate: options.schedule(step)) { _, inputs, targets in
            loader.next(batch: options.batch, inputs: inputs, targets: targets, windows: windows.pointer)
            windowsFilled = true
        }
    }

    /// Fills one micro-batch: (micro-batch index within the update, inputs, targets), each
    /// (options.batch, options.seq) tokens.
    public typealias MicroBatchFiller = (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) throws -> Void

    /// One update whose micro-batches come from `fill` (the lifelong run mixes domains this way)
    /// at learning rate `lr`. `prompt(micro)`, when given, is that micro-batch's domain prompt,
    /// placed as the architecture wants it (`PromptedBatch` for GPT, after `<|bos|>` for BERT).
    /// Collective.
    public func update(learningRate lr: Float, prompt: ((Int) -> Int32?)? = nil, fill: MicroBatchFiller) throws -> StepResult {
        let start = DispatchTime.now().uptimeNanoseconds
        let b = options.batch, t = options.seq, accumulation = options.accumulation
        var lossSum = 0.0, crossEntropySum = 0.0
        let kdWeight = options.distillation?.weight(atStep: step) ?? 0
        let gradients = gradientSum ?? model.gradients
        synchronizer.beginUpdate(target: gradients.pointer, count: gradients.count, label: "gradient all-reduce of update \(step + 1)")
        for micro in 0..<accumulation {
            try fill(micro, inputs.pointer, targets.pointer)
            let globalMicro = communicator.rank * accumulation + micro
            let domainPrompt = prompt?(micro)
            if var masked = options.maskedLM {
                if let domainPrompt { masked.prompt = domainPrompt }
                masked.makeSequences(tokens: inputs.pointer, targets: targets.pointer, batch: b, seq: t,
                                     key: SplitMix64.mix(options.seed, 0x4D41_534B, UInt64(step), UInt64(globalMicro)))
            } else if let domainPrompt {
                PromptedBatch.apply(prompt: domainPrompt, inputs: inputs.pointer, targets: targets.pointer, rows: b, seq: t)
            }
            let dropoutSeed = SplitMix64.mix(options.seed, 0xD50_0000, UInt64(step), UInt64(globalMicro))
            model.zeroGradients()
            // The last micro-batch's gradient is added into the sum and all-reduced range by
            // range as backward finishes them; earlier ones are added whole.
            let last = micro == accumulation - 1
            synchronizer.beginMicroBatch(last: last, gradient: model.gradients.pointer)
            if kdWeight > 0 {
                let value = try distill(weight: kdWeight, batch: b, seq: t, dropoutSeed: dropoutSeed)
                lossSum += value.loss
                crossEntropySum += value.crossEntropy
            } else {
                lossSum += Double(model.forward(tokens: inputs.pointer, targets: targets.pointer,
                                                batch: b, seq: t, dropoutSeed: dropoutSeed))
                model.backward(observer: synchronizer)
            }
            synchronizer.endMicroBatch()
            if let gradientSum, !last {
                if micro == 0 {
                    gradientSum.copy(from: model.gradients)
                } else {
                    addInPlace(gradientSum.pointer, model.gradients.pointer, count: gradientSum.count)
                }
            }
        }
        try synchronizer.finish()
        let contributions = accumulation * communicator.size
        if communicator.size > 1 {
            lossSum = try communicator.allReduce(lossSum, .sum, label: "loss all-reduce of update \(step + 1)")
            if kdWeight > 0 {
                crossEntropySum = try communicator.allReduce(crossEntropySum, .sum, label: "cross-entropy all-reduce of update \(step + 1)")
            }
        }
        if kdWeight == 0 { crossEntropySum = lossSum }
        if contributions > 1 {
            scaleInPlace(gradients.pointer, 1 / Float(contributions), count: gradients.count)
        }
        let norm = clipGradients(gradients, maxNorm: options.clip)
        optimizer.update(parameters: model.parameters, gradients: gradients, learningRate: lr, weightCopy: model.weightCopy)
        step += 1
        let tokens = b * t * contributions
        tokensSeen += tokens
        flops += Double(tokens) * FLOPCount.trainingPerToken(model.config, parameters: model.parameterCount, seq: t)
        if communicator.size > 1 && replicaCheckEvery > 0 && step % replicaCheckEvery == 0 { try verifyReplicas() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return StepResult(step: step, loss: Float(lossSum / Double(contributions)), learningRate: lr,
                          gradientNorm: norm, tokens: tokens, seconds: seconds,
                          communicationWaitSeconds: synchronizer.lastWaitSeconds, distillationWeight: kdWeight,
                          crossEntropy: Float(crossEntropySum / Double(contributions)))
    }

    /// Forward and backward of one micro-batch (in `inputs`, `targets`) under the KI loss
    /// (1 - a) CE + a tau^2 KL(p_T(tau) || p_S(tau)): the student's forward pass, the teacher's
    /// rows for the same inputs (live, or from the cache by window), then the student's backward
    /// from the mixed logit gradient.
    private func distill(weight: Float, batch b: Int, seq t: Int, dropoutSeed: UInt64) throws -> DistillationLoss.Value {
        guard let kd = options.distillation else { preconditionFailure("distill without distillation options") }
        model.forward(tokens: inputs.pointer, targets: targets.pointer, batch: b, seq: t, dropoutSeed: dropoutSeed)
        let rows: TeacherRows
        if let cache = teacherCache {
            guard windowsFilled else {
                throw ConfigError(field: "distillation.cache", message: "a teacher cache needs the run's own loader (plain elle train); this update's batches come from elsewhere")
            }
            let k = cache.header.topK, count = b * t * k
            if cachedIds.count < count {
                cachedIds = Buffer(count: count)
                cachedLogits = FloatBuffer(count: count)
            }
            cache.rows(windows: windows.pointer, count: b, ids: cachedIds.pointer, logits: cachedLogits.pointer)
            rows = .topK(ids: UnsafePointer(cachedIds.pointer), logits: UnsafePointer(cachedLogits.pointer), k: k)
        } else if let teacher {
            rows = teacher.predict(tokens: inputs.pointer, targets: targets.pointer, batch: b, seq: t, topK: kd.topK)
            precondition(teacher.model.config.architecture == .gpt || teacher.model.logitRowCount == model.logitRowCount,
                         "teacher and student predict different rows")
        } else {
            throw ConfigError(field: "distillation.teacher", message: "update \(step + 1) distills but no teacher or teacher cache is attached")
        }
        var value: DistillationLoss.Value?
        let student = model
        model.backward(headGradient: { [distillationLoss] logits in
            value = distillationLoss.apply(logits: logits, targets: student.logitRowTargets, rows: student.logitRowCount,
                                           vocab: student.config.vocab, teacher: rows, temperature: kd.temperature,
                                           weight: weight, writeGradient: true)
        }, observer: synchronizer)
        return value!
    }

    /// Attaches the live teacher of `options.distillation` after checking it fits the student
    /// (architecture, vocabulary, context) and, on resume, that it is the teacher the run started
    /// with (its parameters' XXH64 is saved in the options).
    public func attachTeacher(_ teacher: Teacher) throws {
        guard var kd = options.distillation else {
            throw ConfigError(field: "distillation", message: "a teacher was given but the run has no distillation options")
        }
        try teacher.check(student: model.config, seq: options.seq)
        if let saved = kd.teacherHash, saved != teacher.hashString {
            throw ConfigError(field: "distillation.teacher",
                              message: "\(teacher.source) has parameters XXH64 \(teacher.hashString) but the run was started with a teacher of XXH64 \(saved)")
        }
        kd.teacherHash = teacher.hashString
        options.distillation = kd
        teacher.model.precision = options.matrixPrecision  // its forward passes in the run's precision
        self.teacher = teacher
        teacherCache = nil
    }

    /// Attaches a top-K teacher cache built for this run's train stream, sequence length and
    /// vocabulary (GPT students: BERT masks change at every update).
    public func attachTeacherCache(_ cache: TeacherCache) throws {
        guard var kd = options.distillation else {
            throw ConfigError(field: "distillation", message: "a teacher cache was given but the run has no distillation options")
        }
        guard model.config.architecture == .gpt else {
            throw ConfigError(field: "distillation.cache", message: "a teacher cache fits a GPT only: BERT's masks are drawn anew at every update, so a BERT run uses the live teacher")
        }
        try cache.check(train: loader.tokens, seq: options.seq, vocab: model.config.vocab)
        if let saved = kd.teacherHash, saved != cache.header.teacherXXH64 {
            throw ConfigError(field: "distillation.cache",
                              message: "\(cache.path) holds the teacher of XXH64 \(cache.header.teacherXXH64) but the run was started with \(saved)")
        }
        kd.teacherHash = cache.header.teacherXXH64
        kd.topK = cache.header.topK
        options.distillation = kd
        teacherCache = cache
        teacher = nil
    }

    /// Teacher FLOPs spent so far on all ranks: forward passes of the updates with a_t > 0 (or,
    /// with a cache, the forward passes that built it). 0 without KI.
    public var teacherFLOPs: Double {
        guard let kd = options.distillation else { return 0 }
        if let teacherCache { return teacherCache.header.teacherFLOPs }
        guard let teacher else { return 0 }
        let tokensPerUpdate = Double(options.batch * options.seq * options.accumulation * communicator.size)
        return Double(kd.teacherUpdates(before: step)) * tokensPerUpdate * teacher.forwardFLOPsPerToken(seq: options.seq)
    }

    /// Switches to new options between updates (a lifelong run's next stage or warmup): batch
    /// buffers follow the new shape; with `freshOptimizer`, Adam's moments and step restart.
    /// The run's own loader keeps its sequence length.
    public func reconfigure(options newOptions: TrainingOptions, freshOptimizer: Bool) throws {
        try newOptions.validate(model: model.config)
        options = newOptions
        model.precision = options.matrixPrecision
        inputs = Buffer(count: options.batch * options.seq)
        targets = Buffer(count: options.batch * options.seq)
        windows = Buffer(count: options.batch)
        gradientSum = options.accumulation > 1 ? FloatBuffer(count: model.parameterCount) : nil
        if freshOptimizer {
            optimizer = AdamW(tensors: model.tensors, count: model.parameterCount, settings: options.adam)
        } else {
            optimizer.settings = options.adam
        }
    }

    /// Grows the model by `plan` between two updates (collective; docs/GROWTH.md): rank 0 grows
    /// it and broadcasts the grown config and tensors, every rank verifies its copy against rank
    /// 0's, then rebuilds its model, gradient and optimizer buffers. Adam restarts (step 0) unless
    /// the plan carries the moments. Step, data position and learning-rate schedule continue.
    @discardableResult
    public func grow(_ plan: GrowthPlan) throws -> ReceivedGrowth {
        let grown = try GrowthBroadcast.grow(parameters: model.parameters, config: model.config,
                                             moments: (optimizer.m, optimizer.v), plan: plan,
                                             communicator: communicator, what: "after update \(step)")
        let grownModel = try makeModel(config: grown.config, parameters: grown.parameters)
        grownModel.precision = options.matrixPrecision
        let tensors = grownModel.tensors
        optimizer = grown.moments.map { AdamW(tensors: tensors, settings: options.adam, m: $0.m, v: $0.v, step: optimizer.step) }
            ?? AdamW(tensors: tensors, count: grownModel.parameterCount, settings: options.adam)
        model = grownModel
        gradientSum = options.accumulation > 1 ? FloatBuffer(count: model.parameterCount) : nil
        grownAtStep = step
        return grown
    }

    /// Element counts of the collectives the last update's gradient synchronization started, in
    /// order (empty on one rank), for `elle bench comm` to time them alone.
    public var lastGradientCollectives: [Int] { synchronizer.lastCollectives }

    /// Applies the run's scheduled growth (`options.growth`) if the run stands at its step
    /// (between update `growth.step` and the next) and it has not been applied; else returns nil.
    /// Call it before every update.
    public func growIfDue() throws -> ReceivedGrowth? {
        guard let growth = options.growth, growth.step == step, grownAtStep != step else { return nil }
        return try grow(growth.plan)
    }

    /// Compares a hash of the parameters across ranks; throws a `JobError` naming the ranks
    /// whose copy diverged from rank 0's. Returns the hash.
    @discardableResult
    public func verifyReplicas() throws -> UInt64 {
        try communicator.verifyIdentical(model.parameters.rawBytes,
                                         what: "parameters after update \(step)")
    }

    /// Mean loss per predicted token (every token for GPT, the masked ones for BERT) over the
    /// first `options.evalBatches` batches of the run's validation tokens (no dropout), or nil
    /// when they are shorter than one sequence.
    public func evaluate() throws -> Float? {
        try evaluate(validTokens, batches: options.evalBatches)
    }

    /// Mean loss per token over the first `batches` batches of `stream`'s windows (no dropout),
    /// or nil when it is shorter than one sequence. With a `prompt`, each sequence starts with
    /// that token (`PromptedBatch`). Batches are dealt to ranks round-robin; their losses are
    /// all-reduced as a vector and added in batch order, so the result has the same bits for any
    /// number of ranks. Collective.
    public func evaluate(_ stream: TokenStream, batches wanted: Int, prompt: Int32? = nil) throws -> Float? {
        let b = options.batch, t = options.seq
        let windows = stream.windowCount(seq: t)
        if windows == 0 { return nil }
        let batches = min(wanted, (windows + b - 1) / b)
        // (batch loss * tokens, tokens) per batch; zero where another rank evaluates it.
        let sums = Buffer<Double>(count: 2 * batches)
        for batch in stride(from: communicator.rank, to: batches, by: communicator.size) {
            let first = batch * b, rows = min(b, windows - first)
            for r in 0..<rows {
                stream.copyWindow(first + r, seq: t, inputs: inputs.pointer + r * t, targets: targets.pointer + r * t)
            }
            if var masked = options.maskedLM {
                // Masked LM: the same masks at every evaluation (keyed by the batch, not the step);
                // the prompt goes after the begin token.
                if let prompt { masked.prompt = prompt }
                masked.makeSequences(tokens: inputs.pointer, targets: targets.pointer, batch: rows, seq: t,
                                     key: SplitMix64.mix(options.seed, 0x5641_4C44, UInt64(batch)))
            } else if let prompt {
                PromptedBatch.apply(prompt: prompt, inputs: inputs.pointer, targets: targets.pointer, rows: rows, seq: t)
            }
            let loss = model.forward(tokens: inputs.pointer, targets: targets.pointer, batch: rows, seq: t)
            let counted = (0..<(rows * t)).reduce(0) { $0 + (targets[$1] >= 0 ? 1 : 0) }
            sums[2 * batch] = Double(loss) * Double(counted)
            sums[2 * batch + 1] = Double(counted)
        }
        if communicator.size > 1 { try communicator.allReduce(sums, .sum, label: "validation loss all-reduce after update \(step)") }
        var total = 0.0, tokens = 0.0
        for batch in 0..<batches {
            total += sums[2 * batch]
            tokens += sums[2 * batch + 1]
        }
        return tokens > 0 ? Float(total / tokens) : nil
    }

    /// The run's state with every rank's loader position (gathered to rank 0; on other ranks
    /// `loaders` holds only their own).
    public func gatherState() throws -> TrainingState {
        var mine = [Int64(loader.position.epoch), Int64(loader.position.cursor)]
        var all = [Int64](repeating: 0, count: 2 * communicator.size)
        try communicator.startGather(&mine, count: 2, into: &all, root: 0, label: "loader position gather at update \(step)").wait()
        let loaders = communicator.isRoot
            ? (0..<communicator.size).map { LoaderPosition(epoch: Int(all[2 * $0]), cursor: Int(all[2 * $0 + 1])) }
            : [loader.position]
        var state = TrainingState(step: step, options: options, loaders: loaders, optimizerStep: optimizer.step,
                                  tokensSeen: tokensSeen, worldSize: communicator.size)
        state.flops = flops
        return state
    }

    /// The run as a checkpoint (meaningful on rank 0). Checks first that all ranks hold the same
    /// parameters, so the file stands for every replica.
    public func checkpoint() throws -> Checkpoint {
        try verifyReplicas()
        return Checkpoint(config: model.config, state: try gatherState(),
                          tensors: [("parameters", model.parameters), ("adam.m", optimizer.m), ("adam.v", optimizer.v)])
    }

    /// Writes `step-NNNNNNNN.ckpt` in `folder` on rank 0 and points `folder/latest` at it.
    /// Returns its path on rank 0, nil on the other ranks (which write nothing).
    @discardableResult
    public func saveCheckpoint(in folder: String) throws -> String? {
        let checkpoint = try checkpoint()
        guard communicator.isRoot else { return nil }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let name = String(format: "step-%08d.ckpt", step)
        let path = (folder as NSString).appendingPathComponent(name)
        try checkpoint.write(to: path)
        try writeFileAtomically(name + "\n", to: (folder as NSString).appendingPathComponent("latest"))
        return path
    }

    /// The checkpoint `folder/latest` names, or nil when there is none.
    public static func latestCheckpoint(in folder: String) -> String? {
        let pointer = (folder as NSString).appendingPathComponent("latest")
        guard let text = try? String(contentsOfFile: pointer, encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : (folder as NSString).appendingPathComponent(name)
    }

    /// Rebuilds a trainer from a checkpoint file: model, moments, step and data position.
    public static func resume(from path: String, train: TokenStream, valid: TokenStream,
                              communicator: Communicator = SingleProcess(),
                              options override: TrainingOptions? = nil) throws -> Trainer {
        try resume(from: try Checkpoint.read(from: path), path: path, train: train, valid: valid,
                   communicator: communicator, options: override)
    }

    public static func resume(from path: String, train: Buffer<Int32>, valid: Buffer<Int32>,
                              communicator: Communicator = SingleProcess(),
                              options override: TrainingOptions? = nil) throws -> Trainer {
        try resume(from: path, train: TokenStream(train), valid: TokenStream(valid),
                   communicator: communicator, options: override)
    }

    /// Rebuilds a trainer from a checkpoint read from `path` (on ranks other than 0, one from
    /// `Checkpoint.readOnRoot`, whose tensors the trainer then receives from rank 0).
    public static func resume(from checkpoint: Checkpoint, path: String, train: TokenStream, valid: TokenStream,
                              communicator: Communicator, options override: TrainingOptions? = nil) throws -> Trainer {
        guard let parameters = checkpoint.tensor("parameters") else {
            throw CheckpointError(path: path, "holds no parameters tensor")
        }
        let model = try makeModel(config: checkpoint.config, parameters: parameters)
        var moments: (FloatBuffer, FloatBuffer)?
        if let m = checkpoint.tensor("adam.m"), let v = checkpoint.tensor("adam.v") {
            guard m.count == parameters.count, v.count == parameters.count else {
                throw CheckpointError(path: path, "has Adam moments of a different size than its parameters")
            }
            moments = (m, v)
        }
        return try Trainer(model: model, options: override ?? checkpoint.state.options, train: train,
                           valid: valid, communicator: communicator, state: checkpoint.state,
                           moments: moments)
    }
}
