import Corpus
import Foundation
import Model
import Tensors

/// How a plain training run proceeds. Saved in every checkpoint so `--resume` continues with
/// exactly the same settings.
public struct TrainingOptions: Codable, Equatable, Sendable {
    /// Sequences per micro-batch on each rank.
    public var batch: Int
    /// Tokens per sequence.
    public var seq: Int
    /// Micro-batches per update on each rank (gradient accumulation).
    public var accumulation: Int = 1
    /// Total updates.
    public var steps: Int
    public var schedule: LearningRateSchedule
    public var adam: AdamWSettings = AdamWSettings()
    /// Global gradient-norm clipping threshold, or nil for none.
    public var clip: Float? = 1.0
    public var seed: UInt64 = 1
    public var logEvery: Int = 10
    /// Validation every N updates (0: only at the end).
    public var evalEvery: Int = 0
    /// Validation batches per evaluation.
    public var evalBatches: Int = 20
    /// Checkpoint every N updates (0: only at the end).
    public var checkpointEvery: Int = 0
    /// Also checkpoint when this many minutes have passed since the last one (0 or nil: never by
    /// time; nil in checkpoints from before it existed). Rank 0's clock decides for every rank.
    public var checkpointMinutes: Double?
    public static let defaultCheckpointMinutes = 10.0
    /// Where the text came from (file or folder, or a prepared data folder) and how it was
    /// tokenized ("bytes", or the prepared folder's tokenizer.json).
    public var dataPath: String
    public var tokenizer: String = "bytes"
    /// The domain of a prepared data folder (nil for raw text).
    public var domain: String? = nil
    public var validFraction: Double = 0.05
    /// A growth event inside the run (`elle train --grow-at`), or nil.
    public var growth: ScheduledGrowth?
    /// Growth decided by the validation curve (`elle train --grow-on-plateau`) with its state, or nil.
    public var growthPolicy: PlateauPolicy?
    /// Gradient all-reduce bucket size in MiB (2^20 bytes; nil: `defaultBucketMB`): on several
    /// ranks, buckets of about this size are all-reduced while backward still runs (docs/SCALING.md).
    /// 0: one all-reduce after backward. Results do not depend on it.
    public var bucketMB: Double?
    public static let defaultBucketMB = 2.0
    /// ZeRO stage (`--zero`): 1 shards Adam's moments and the update over the ranks
    /// (`ShardLayout`, docs/SCALING.md); nil or 0 keeps a full optimizer on every rank. Results do
    /// not depend on it.
    public var zero: Int?
    /// What gradients cross the network as between ranks (`--allreduce-dtype`): bf16 halves the
    /// bytes (each rank's values rounded once, sums in float32; `Communicator.startTreeSum`); nil
    /// is fp32, exact and independent of the rank count. The tied embedding's touched rows stay
    /// float32.
    public var allreduceDType: Precision?
    public var exchangePrecision: Precision { allreduceDType ?? .fp32 }

    /// The bucket size in floats.
    public var bucketElements: Int { Int(((bucketMB ?? TrainingOptions.defaultBucketMB) * 1_048_576 / 4).rounded()) }

    /// How windows become masked-LM sequences: set for a BERT model, nil for GPT.
    public var maskedLM: MaskedLM?
    /// Knowledge inheritance from a teacher (docs/KI.md), or nil.
    public var distillation: DistillationOptions?
    /// The operands of the model's matrix products (`--precision`); nil is fp32 (checkpoints from
    /// before bf16 have no such field). Saved in checkpoints and compared across ranks, so a run
    /// resumes, and all its ranks compute, in one precision.
    public var precision: Precision?
    /// `precision`, fp32 when unset.
    public var matrixPrecision: Precision { precision ?? .fp32 }
    /// The run's TensorBoard folder (rank 0 writes event files there), or nil; kept so a resumed
    /// run goes on writing there.
    public var tensorboard: String?

    public init(batch: Int, seq: Int, steps: Int, schedule: LearningRateSchedule, dataPath: String) {
        self.batch = batch
        self.seq = seq
        self.steps = steps
        self.schedule = schedule
        self.dataPath = dataPath
    }

    /// Throws naming the first invalid field.
    public func validate(model: ModelConfig) throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw ConfigError(field: field, message: why) }
        }
        try check(batch >= 1, "batch", "must be at least 1 (got \(batch))")
        try check(seq >= 1 && seq <= model.context, "seq", "must be in 1...\(model.context) (the model's context), got \(seq)")
        try check(accumulation >= 1, "accumulation", "must be at least 1 (got \(accumulation))")
        try check(steps >= 0, "steps", "must not be negative (got \(steps))")
        try check(schedule.peak > 0 && schedule.peak.isFinite, "lr", "must be positive (got \(schedule.peak))")
        try check(clip == nil || clip! > 0, "clip", "must be positive")
        try check(logEvery >= 1, "log-every", "must be at least 1")
        try check((checkpointMinutes ?? 0) >= 0, "checkpoint-minutes", "must be 0 (off) or a positive number of minutes")
        try check(validFraction >= 0 && validFraction < 1, "valid-fraction", "must be in [0, 1)")
        if let bucketMB {
            try check(bucketMB >= 0 && bucketMB.isFinite, "bucket-mb", "must be 0 or a positive number of MiB (got \(bucketMB))")
        }
        try check(zero == nil || zero == 0 || zero == 1, "zero", "must be 0 (off) or 1 (optimizer state sharded over the ranks), got \(zero ?? 0)")
        switch model.architecture {
        case .gpt:
            try check(maskedLM == nil, "maskedLM", "is for BERT; a GPT trains on next-token targets")
        case .bert:
            guard let maskedLM else {
                throw ConfigError(field: "maskedLM", message: "is required for BERT: its special tokens (bos, mask, pad) come from a BPE tokenizer")
            }
            do { try maskedLM.validate(vocab: model.vocab) } catch let error as DataError {
                throw ConfigError(field: "maskedLM", message: error.message)
            }
        }
        if let distillation {
            try distillation.validate()
            try check(distillation.cache == nil || model.architecture == .gpt, "distillation.cache",
                      "fits a GPT only: BERT's masks are drawn anew at every update, so a BERT run uses the live teacher")
        }
        if let growthPolicy {
            try growthPolicy.validate(model: model, scheduled: growth != nil)
        }
        if let growth {
            try check(growth.step >= 0, "grow-at", "must not be negative (got \(growth.step))")
            do {
                try growth.plan.validate()
            } catch let error as GrowthPlanError {
                throw ConfigError(field: "growth.\(error.field)", message: error.message)
            }
        }
    }
}

/// A growth event at a fixed point of a run: between update `step` and the next, the model grows
/// by `plan` (`Trainer.growIfDue`). So a checkpoint at update `step` or earlier holds the model
/// before the growth, and any later one the grown model.
public struct ScheduledGrowth: Codable, Equatable, Sendable {
    public var step: Int
    public var plan: GrowthPlan

    public init(step: Int, plan: GrowthPlan) {
        self.step = step
        self.plan = plan
    }
}

/// Everything besides tensors needed to continue a run exactly. No random-number state is
/// needed: dropout masks are a function of (seed, step, global micro-batch, site) and each
/// epoch's data order of (seed, epoch).
public struct TrainingState: Codable, Equatable, Sendable {
    /// Updates completed.
    public var step: Int
    public var options: TrainingOptions
    /// Each rank's loader position, by rank (gathered to rank 0 when writing a checkpoint).
    public var loaders: [LoaderPosition]
    /// Adam's update count (bias correction).
    public var optimizerStep: Int
    /// Tokens consumed by all ranks so far.
    public var tokensSeen: Int
    /// Training FLOPs of the model so far, all ranks (`FLOPCount`; nil in older checkpoints).
    public var flops: Double?
    public var worldSize: Int
    /// Set in a checkpoint whose Adam moments are in that many shard files beside it (ZeRO-1:
    /// `Trainer.momentShardPath`) instead of in the file itself; nil otherwise.
    public var momentShards: Int?
    /// A lifelong run's own state (`LifelongState` in the Lifelong module, which this module
    /// cannot name; it decodes it with `LifelongState(_:)`); nil for plain runs. Checkpoints
    /// written before it was a nested object hold it as a JSON string, which is read too.
    public var lifelong: JSONValue? {
        get {
            guard case .string(let text)? = lifelongValue else { return lifelongValue }
            return (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? lifelongValue
        }
        set { lifelongValue = newValue }
    }
    private var lifelongValue: JSONValue?

    enum CodingKeys: String, CodingKey {
        case step, options, loaders, optimizerStep, tokensSeen, flops, worldSize, momentShards
        case lifelongValue = "lifelong"
    }

    public init(step: Int, options: TrainingOptions, loaders: [LoaderPosition], optimizerStep: Int,
                tokensSeen: Int, worldSize: Int) {
        self.step = step
        self.options = options
        self.loaders = loaders
        self.optimizerStep = optimizerStep
        self.tokensSeen = tokensSeen
        self.worldSize = worldSize
    }
}

/// A JSON value kept as a tree: the slot in `TrainingState` where a layer above `Training`
/// (a lifelong run) keeps its own typed state. It is written as a nested JSON object in the
/// checkpoint header, and the owner decodes it into its type (`decode`), with errors that say
/// what is wrong instead of a silent nil.
public enum JSONValue: Codable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    /// The JSON form of any encodable value.
    public init<T: Encodable>(encoding value: T) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(value))
    }

    /// This value decoded as `T`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: try JSONEncoder().encode(self))
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let value = try? c.decode(Bool.self) { self = .bool(value) }
        else if let value = try? c.decode(Double.self) { self = .number(value) }
        else if let value = try? c.decode(String.self) { self = .string(value) }
        else if let value = try? c.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let value): try c.encode(value)
        case .number(let value): try c.encode(value)
        case .string(let value): try c.encode(value)
        case .array(let value): try c.encode(value)
        case .object(let value): try c.encode(value)
        }
    }
}
