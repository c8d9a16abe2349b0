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

    public init(step: Int, loss: Float, learningRate: Float, gradientNorm: Float, tokens: Int, seconds: Double,
                communicationWaitSeconds: Double = 0, distillationWeight: Float = 0, crossEntropy: Float? = nil) {
        self.step = step
        self.loss = loss
        self.learningRate = learningRate
        self.gradientNorm = gradientNorm
        self.tokens = tokens
        self.seconds = seconds
        self.communicationWaitSeconds = communicationWaitSeconds
        self.distillationWeight = distillationWeight
        self.crossEntropy = crossEntropy ?? loss
    }
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
    public internal(set) var options: TrainingOptions
    public let communicator: Communicator
    public private(set) var step: Int
    public private(set) var tokensSeen: Int
    /// Training FLOPs of the student so far on all ranks (6 N + 12 L D T per token, BERT's head at its predicted share: `FLOPCount`),
    /// at the model's size when each update ran (so growth is counted right); saved in checkpoints.
    public private(set) var flops: Double
    let loader: SequenceLoader
    let validTokens: TokenStream
    var inputs: Buffer<Int32>
    var targets: Buffer<Int32>
    /// Sum of micro-batch gradients when accumulating (nil with one micro-batch per update).
    private var gradientSum: FloatBuffer?
    /// Sums the gradient across ranks, overlapped with backward.
    let synchronizer: GradientSynchronizer
    /// How a resume on another number of ranks re-split the global batch (nil otherwise), for
    /// the log.
    public private(set) var resplit: String?
    /// The earlier micro-batches' gradients, summed in a pairwise tree.
    let microBatchSum = MicroBatchSum()
    /// The step of the last growth, so a scheduled growth is applied once.
    private var grownAtStep: Int?
    /// Knowledge inheritance (`options.distillation`): the live teacher or its top-K cache
    /// (`attachTeacher`, `attachTeacherCache`). Updates with a_t = 0 never touch them, so they
    /// are exactly plain training.
    public internal(set) var teacher: Teacher?
    public internal(set) var teacherCache: TeacherCache?
    let distillationLoss = DistillationLoss()
    /// This rank's window indices of the micro-batch being filled by `trainStep` (for the cache).
    var windows: Buffer<Int32>
    var windowsFilled = false
    var cachedIds = Buffer<Int32>(count: 0)
    var cachedLogits = FloatBuffer(count: 0)
    /// ZeRO-1: the broadcasts of the last update's parameter all-gather (for `elle bench comm`).
    var lastParameterGather: [CollectiveRecord] = []
    /// The last update's parameter all-gather under ZeRO-1 (`ShardArrivals`), until checked.
    private var parameterArrivals: ShardArrivals?
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
    public init(model: LanguageModel, options requested: TrainingOptions, train: TokenStream, valid: TokenStream,
                communicator: Communicator, state: TrainingState?, moments: (m: FloatBuffer, v: FloatBuffer)?) throws {
        var options = requested
        if let state, state.worldSize != communicator.size {
            options.accumulation = try Trainer.accumulation(keeping: options.accumulation * state.worldSize,
                                                            from: state.worldSize, on: communicator.size)
            resplit = "the checkpoint's \(state.worldSize) rank(s) x \(requested.accumulation) micro-batch(es) of \(options.batch) sequences now run as \(communicator.size) rank(s) x \(options.accumulation)"
        }
        try options.validate(model: model.config)
        model.precision = options.matrixPrecision
        self.model = model
        self.options = options
        self.communicator = communicator
        optimizer = AdamW(tensors: model.tensors, count: model.parameterCount, settings: options.adam,
                          shard: options.zero == 1 ? ShardLayout(count: model.parameterCount, ranks: communicator.size).range(of: communicator.rank) : nil)
        if let state {
            guard !state.loaders.isEmpty else { throw JobError("the checkpoint holds no data position (no loaders)") }
            step = state.step
            tokensSeen = state.tokensSeen
            flops = state.flops ?? Double(state.tokensSeen) * FLOPCount.trainingPerToken(model.config, parameters: model.parameterCount, seq: options.seq)
            optimizer.step = state.optimizerStep
        } else {
            step = 0
            tokensSeen = 0
            flops = 0
        }
        // Every rank's loader stands at the same place (an update's batches are numbered globally).
        loader = try SequenceLoader(stream: train, seq: options.seq, seed: options.seed,
                                    rank: communicator.rank, worldSize: communicator.size,
                                    position: state?.loaders[0] ?? LoaderPosition())
        validTokens = valid
        inputs = Buffer(count: options.batch * options.seq)
        targets = Buffer(count: options.batch * options.seq)
        windows = Buffer(count: options.batch)
        gradientSum = options.accumulation > 1 ? FloatBuffer(count: model.parameterCount) : nil
        synchronizer = GradientSynchronizer(communicator: communicator, bucketElements: options.bucketElements)
        if state == nil { startGrowthPolicy() }
        try synchronizeReplicas(train: train)
        if let moments { try installMoments(moments) }
    }

    /// Micro-batches per rank that keep the global batch of `global` micro-batches on `ranks`
    /// ranks (a resume on another rank count keeps what one update means); throws naming the
    /// numbers when it cannot be split evenly.
    public static func accumulation(keeping global: Int, from saved: Int, on ranks: Int) throws -> Int {
        guard global % ranks == 0 else {
            throw JobError("cannot resume on \(ranks) rank(s): the run's updates have \(global) micro-batches (\(saved) rank(s) x \(global / saved)), "
                           + "which \(ranks) ranks cannot share evenly; use a number of ranks that divides \(global)")
        }
        return global / ranks
    }

    /// Makes every rank start from rank 0's run: the configuration, options and data must agree
    /// (a mismatch names the rank and the field), then rank 0's parameters are broadcast (its
    /// moments follow in `installMoments` or `loadMomentShards`).
    private func synchronizeReplicas(train: TokenStream) throws {
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
    }

    /// Runs one update on the run's own data at the schedule's rate: accumulation micro-batches
    /// on each rank, gradient average over all of them, clipping, AdamW. The loss returned is
    /// the mean over every rank's micro-batches. Global micro-batch g reads the loader's batch g
    /// of the update; the loader moves once the update is complete, so an interrupted update
    /// leaves the data position of the last completed one.
    public func trainStep() throws -> StepResult {
        defer { windowsFilled = false }
        let result = try update(learningRate: options.schedule(schedulePosition)) { g, inputs, targets in
            loader.fill(batch: g, size: options.batch, inputs: inputs, targets: targets, windows: windows.pointer)
            windowsFilled = true
        }
        loader.advance(batches: globalMicroBatches, size: options.batch)
        return result
    }

    /// Micro-batches per update over all ranks (G): rank r runs global micro-batches
    /// r * accumulation ..< (r + 1) * accumulation.
    public var globalMicroBatches: Int { options.accumulation * communicator.size }

    /// Fills one micro-batch: (global micro-batch index g in 0..<G, inputs, targets), each
    /// (options.batch, options.seq) tokens.
    public typealias MicroBatchFiller = (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) throws -> Void

    /// One update whose micro-batches come from `fill` (the lifelong run mixes domains this way)
    /// at learning rate `lr`. `prompt(g)`, when given, is global micro-batch g's domain prompt,
    /// placed as the architecture wants it (`PromptedBatch` for GPT, after `<|bos|>` for BERT).
    ///
    /// Everything a micro-batch draws (data, dropout and mask seeds) follows its global index g,
    /// and the gradients are summed over g in one fixed pairwise tree: inside a rank over its
    /// consecutive micro-batches (`MicroBatchSum`), then across ranks in rank order. So the
    /// update has the same bits for any split of G whose shares are aligned to that tree (1, 2,
    /// 4... ranks). Collective.
    public func update(learningRate lr: Float, prompt: ((Int) -> Int32?)? = nil, fill: MicroBatchFiller) throws -> StepResult {
        let start = DispatchTime.now().uptimeNanoseconds
        let b = options.batch, t = options.seq, accumulation = options.accumulation
        let G = globalMicroBatches, firstMicro = communicator.rank * accumulation
        // Per global micro-batch: (loss, cross-entropy), zero where another rank runs it.
        let losses = Buffer<Double>(count: 2 * G)
        losses.zero()
        let kdWeight = options.distillation?.weight(atStep: step) ?? 0
        let gradients = gradientSum ?? model.gradients
        let layout = shards
        synchronizer.beginUpdate(target: gradients.pointer, count: gradients.count, shards: layout, wire: options.exchangePrecision,
                                 label: "gradient \(layout == nil ? "all-reduce" : "reduce") of update \(step + 1)")
        microBatchSum.beginUpdate()
        for micro in 0..<accumulation {
            let g = firstMicro + micro
            try fill(g, inputs.pointer, targets.pointer)
            let domainPrompt = prompt?(g)
            if var masked = options.maskedLM {
                if let domainPrompt { masked.prompt = domainPrompt }
                masked.makeSequences(tokens: inputs.pointer, targets: targets.pointer, batch: b, seq: t,
                                     key: SeedStream.trainingMasks(seed: options.seed, step: step, microBatch: g))
            } else if let domainPrompt {
                PromptedBatch.apply(prompt: domainPrompt, inputs: inputs.pointer, targets: targets.pointer, rows: b, seq: t)
            }
            let dropoutSeed = SeedStream.dropout(seed: options.seed, step: step, microBatch: g)
            model.zeroGradients()
            // The last micro-batch's gradient is added into the sum and all-reduced range by
            // range as backward finishes them; earlier ones go into the pairwise sum whole.
            let last = micro == accumulation - 1
            synchronizer.beginMicroBatch(last: last, gradient: model.gradients.pointer,
                                         partials: last ? microBatchSum.partials : [])
            if kdWeight > 0 {
                let value = try distill(weight: kdWeight, batch: b, seq: t, dropoutSeed: dropoutSeed)
                try checkParameterArrivals()
                losses[2 * g] = value.loss
                losses[2 * g + 1] = value.crossEntropy
            } else {
                losses[2 * g] = Double(model.forward(tokens: inputs.pointer, targets: targets.pointer,
                                                     batch: b, seq: t, dropoutSeed: dropoutSeed))
                losses[2 * g + 1] = losses[2 * g]
                // ZeRO-1: a part of the parameter all-gather that never arrived ends the update
                // here, not after a backward pass on it.
                try checkParameterArrivals()
                model.backward(observer: synchronizer)
            }
            synchronizer.endMicroBatch()
            if let gradientSum, !last { microBatchSum.add(model.gradients, into: gradientSum) }
        }
        try synchronizer.finish()
        // One non-zero term per entry: the vector's sum is exact, and added in g order it has
        // the same bits for any number of ranks.
        if communicator.size > 1 { try communicator.allReduce(losses, .sum, label: "loss all-reduce of update \(step + 1)") }
        // Under ZeRO only this rank's shard of the gradient is summed and used.
        let owned = ownedRange
        if G > 1 { scaleInPlace(gradients.pointer + owned.lowerBound, 1 / Float(G), count: owned.count) }
        let norm: Float
        if let layout {
            // ZeRO-1: each rank updates its shard (no fused bf16 copy: the next forward converts
            // the gathered parameters), then the shards are gathered.
            norm = try clipShardedGradients(gradients, layout: layout)
            optimizer.update(parameters: model.parameters, gradients: gradients, learningRate: lr)
            // The shards arrive while the next forward pass runs: it waits for each part just
            // before it reads it; anything else that reads the parameters waits for all.
            let (messages, records) = try startAllGather(model.parameters.pointer, layout: layout,
                                                         what: "parameter all-gather of update \(step + 1)")
            lastParameterGather = records
            model.parametersChanged()
            if !messages.isEmpty {
                let arrivals = ShardArrivals(messages)
                model.arrivals = arrivals
                parameterArrivals = arrivals
            }
        } else {
            norm = clipGradients(gradients, maxNorm: options.clip)
            optimizer.update(parameters: model.parameters, gradients: gradients, learningRate: lr, weightCopy: model.weightCopy)
        }
        var lossSum = 0.0, crossEntropySum = 0.0
        for g in 0..<G {
            lossSum += losses[2 * g]
            crossEntropySum += losses[2 * g + 1]
        }
        model.advanceRamp()
        step += 1
        let tokens = b * t * G
        tokensSeen += tokens
        flops += Double(tokens) * FLOPCount.trainingPerToken(model.config, parameters: model.parameterCount, seq: t)
        if communicator.size > 1 && replicaCheckEvery > 0 && step % replicaCheckEvery == 0 { try verifyReplicas() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return StepResult(step: step, loss: Float(lossSum / Double(G)), learningRate: lr,
                          gradientNorm: norm, tokens: tokens, seconds: seconds,
                          communicationWaitSeconds: synchronizer.lastWaitSeconds, distillationWeight: kdWeight,
                          crossEntropy: Float(crossEntropySum / Double(G)))
    }

    /// Throws what went wrong in the last update's parameter all-gather (ZeRO-1), once every
    /// part of it was waited for (by the update's first forward pass or an earlier read).
    private func checkParameterArrivals() throws {
        guard let arrivals = parameterArrivals, model.arrivals == nil else { return }
        parameterArrivals = nil
        if let failure = arrivals.failure { throw failure }
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
        if freshOptimizer || optimizer.shard != ownedRange {
            optimizer = self.freshOptimizer()
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
        // Under ZeRO the moments are gathered whole for the growth (a transient full copy on every
        // rank) and each rank keeps its shard of the grown ones.
        let moments = plan.moments == .reset ? nil : try fullMoments()
        let grown = try GrowthBroadcast.grow(parameters: model.parameters, config: model.config,
                                             moments: moments, plan: plan,
                                             communicator: communicator, what: "after update \(step)")
        let grownModel = try makeModel(config: grown.config, parameters: grown.parameters)
        grownModel.precision = options.matrixPrecision
        let previousStep = optimizer.step
        model = grownModel
        optimizer = freshOptimizer()
        if let carried = grown.moments {
            optimizer.copyMoments(from: carried, covering: 0..<model.parameterCount)
            optimizer.step = previousStep
        }
        gradientSum = options.accumulation > 1 ? FloatBuffer(count: model.parameterCount) : nil
        grownAtStep = step
        return grown
    }

    /// Element counts of the collectives the last update's gradient synchronization started, in
    /// order (empty on one rank), for `elle bench comm` to time them alone.
    public var lastGradientCollectives: [CollectiveRecord] { synchronizer.lastCollectives + lastParameterGather }

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

}
