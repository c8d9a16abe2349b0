import Communication
import Corpus
import Foundation
import Model
import Tensors

/// Validation, the run's state and checkpoints of a `Trainer`.
extension Trainer {
    /// Mean loss per predicted token (every token for GPT, the masked ones for BERT) over the
    /// first `options.evalBatches` batches of the run's validation tokens (no dropout), or nil
    /// when they are shorter than one sequence.
    public func evaluate() throws -> Float? {
        try evaluate(validTokens, batches: options.evalBatches)
    }

    /// Mean loss per token over the first `batches` batches of `stream`'s windows (no dropout),
    /// or nil when it is shorter than one sequence. With a `prompt`, each sequence starts with
    /// that token (`PromptedBatch`). `using` evaluates another model (a teacher) on the same
    /// batches. Batches are dealt to ranks round-robin; their losses are
    /// all-reduced as a vector and added in batch order, so the result has the same bits for any
    /// number of ranks. Collective.
    public func evaluate(_ stream: TokenStream, batches wanted: Int, prompt: Int32? = nil, using evaluated: LanguageModel? = nil) throws -> Float? {
        let model = evaluated ?? self.model
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
                                     key: SeedStream.validationMasks(seed: options.seed, batch: batch))
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
        return state(loaders: loaders)
    }

    func state(loaders: [LoaderPosition]) -> TrainingState {
        var state = TrainingState(step: step, options: options, loaders: loaders, optimizerStep: optimizer.step,
                                  tokensSeen: tokensSeen, worldSize: communicator.size)
        state.flops = flops
        return state
    }

    /// The state of the last completed update as this rank alone holds it (no collective: for a
    /// rank whose peers are gone). The loaders of all ranks share one cursor, so this rank's
    /// position stands for every rank's.
    /// Nil under ZeRO: this rank holds only its shard of the moments, so the run resumes from its
    /// last regular checkpoint instead.
    public func localCheckpoint() -> Checkpoint? {
        guard shards == nil else { return nil }
        let position = loader.position
        return Checkpoint(config: model.config, state: state(loaders: Array(repeating: position, count: communicator.size)),
                          tensors: [("parameters", model.parameters), ("adam.m", optimizer.m), ("adam.v", optimizer.v)])
    }

    /// The run as a checkpoint (meaningful on rank 0). Checks first that all ranks hold the same
    /// parameters, so the file stands for every replica. Under ZeRO it holds the parameters only
    /// and names the moment shards every rank writes beside it (`writeMomentShards`).
    public func checkpoint() throws -> Checkpoint {
        try verifyReplicas()
        var state = try gatherState()
        if let layout = shards {
            state.momentShards = layout.ranks
            return Checkpoint(config: model.config, state: state, tensors: [("parameters", model.parameters)])
        }
        return Checkpoint(config: model.config, state: state,
                          tensors: [("parameters", model.parameters), ("adam.m", optimizer.m), ("adam.v", optimizer.v)])
    }

    /// Writes `step-NNNNNNNN.ckpt` in `folder` on rank 0 and points `folder/latest` at it
    /// (`RunFolder.write`). Returns its path on rank 0, nil on the other ranks (which write nothing).
    /// Collective.
    @discardableResult
    public func saveCheckpoint(in folder: String, keepSteps: Int? = nil) throws -> String? {
        let checkpoint = try checkpoint()
        try writeMomentShards(in: RunFolder(folder), name: RunFolder.stepCheckpointName(step))
        guard communicator.isRoot else { return nil }
        return try RunFolder(folder).write(checkpoint, name: RunFolder.stepCheckpointName(step), keepSteps: keepSteps)
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
    /// `RunFolder.readOnRoot`, whose tensors the trainer then receives from rank 0).
    public static func resume(from checkpoint: Checkpoint, path: String, train: TokenStream, valid: TokenStream,
                              communicator: Communicator, options override: TrainingOptions? = nil) throws -> Trainer {
        let trainer = try Trainer(model: try checkpoint.model(path: path), options: override ?? checkpoint.state.options, train: train,
                                  valid: valid, communicator: communicator, state: checkpoint.state,
                                  moments: try checkpoint.moments(path: path))
        try trainer.loadMomentShards(of: checkpoint, path: path)
        return trainer
    }
}
