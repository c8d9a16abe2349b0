import Foundation
import Model
import Training
import Yams

/// A lifelong run in one YAML file: the initial model, the prepared data, and one stage per
/// domain in arrival order, each with its steps, growth, warmup, replay and optimization
/// settings. `defaults` apply to every stage; a stage may override any of them. Keys are the
/// Swift names (camelCase); an unknown key is an error naming its path. See docs/LIFELONG.md.
public struct StagePlan: Decodable, Sendable {
    public var name: String
    public var model: ModelSpec
    /// A folder written by `elle data prepare` (its manifest names the domains).
    public var data: String
    public var seed: UInt64
    /// Step checkpoints kept besides every stage end's (the newest K).
    public var keepCheckpoints: Int
    public var stages: [Stage]

    /// The initial model (the vocabulary comes from the data's tokenizer).
    public struct ModelSpec: Decodable, Sendable {
        public var architecture: Architecture = .gpt
        public var layers: Int
        public var width: Int
        public var heads: Int
        public var ffn: Int?
        public var context: Int
        public var dropout: Float = 0.1

        enum CodingKeys: String, CodingKey, CaseIterable { case architecture, layers, width, heads, ffn, context, dropout }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            architecture = try c.decodeIfPresent(Architecture.self, forKey: .architecture) ?? architecture
            layers = try c.decode(Int.self, forKey: .layers)
            width = try c.decode(Int.self, forKey: .width)
            heads = try c.decode(Int.self, forKey: .heads)
            ffn = try c.decodeIfPresent(Int.self, forKey: .ffn)
            context = try c.decode(Int.self, forKey: .context)
            dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? dropout
        }

        public func config(vocab: Int) -> ModelConfig {
            ModelConfig(architecture: architecture, layers: layers, width: width, heads: heads, vocab: vocab,
                        context: context, ffn: ffn, dropout: dropout)
        }
    }

    /// Replay of earlier domains' memories (spec section 5).
    public struct Replay: Codable, Equatable, Sendable {
        /// Expected share of each update's micro-batches taken from memory.
        public var ratio: Double = 0.1
        public var weighting: ReplayWeighting = .uniform
        /// Updates between refreshes of the adaptive weights.
        public var interval: Int = 50
        /// Validation batches per old domain at each refresh.
        public var evalBatches: Int = 4

        enum CodingKeys: String, CodingKey, CaseIterable { case ratio, weighting, interval, evalBatches }

        public init() {}
        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            ratio = try c.decodeIfPresent(Double.self, forKey: .ratio) ?? ratio
            weighting = try c.decodeIfPresent(ReplayWeighting.self, forKey: .weighting) ?? weighting
            interval = try c.decodeIfPresent(Int.self, forKey: .interval) ?? interval
            evalBatches = try c.decodeIfPresent(Int.self, forKey: .evalBatches) ?? evalBatches
        }
    }

    /// Function recovering warmup after a growth: `steps` updates on the just-finished domain's
    /// memory (plus the usual replay of older ones), a fresh optimizer, and the new stage's
    /// schedule shape cut to `steps` with peak `lr` (default: the stage's).
    public struct Warmup: Codable, Equatable, Sendable {
        public var steps: Int
        public var lr: Float?

        enum CodingKeys: String, CodingKey, CaseIterable { case steps, lr }

        public init(steps: Int, lr: Float? = nil) {
            self.steps = steps
            self.lr = lr
        }
        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            steps = try c.decode(Int.self, forKey: .steps)
            lr = try c.decodeIfPresent(Float.self, forKey: .lr)
        }
    }

    /// Knowledge inheritance in a stage's training phase (spec section 6, docs/KI.md): the loss
    /// (1 - a_t) CE + a_t tau^2 KL(p_teacher(tau) || p_student(tau)) over the stage's first
    /// `steps` updates. `teacher` is `previous` (the model that ended the previous stage, before
    /// this stage's growth: its stage-end checkpoint) or a checkpoint path.
    public struct KI: Codable, Equatable, Sendable {
        public var teacher: String
        public var steps: Int
        public var temperature: Float = 2
        public var schedule: DistillationSchedule = .linear
        /// a_t of the constant schedule.
        public var weight: Float = 0.5
        /// Keep the teacher's K most probable tokens per position (default: all).
        public var topK: Int?

        enum CodingKeys: String, CodingKey, CaseIterable { case teacher, steps, temperature, schedule, weight, topK }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            teacher = try c.decode(String.self, forKey: .teacher)
            steps = try c.decode(Int.self, forKey: .steps)
            temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? temperature
            schedule = try c.decodeIfPresent(DistillationSchedule.self, forKey: .schedule) ?? schedule
            weight = try c.decodeIfPresent(Float.self, forKey: .weight) ?? weight
            topK = try c.decodeIfPresent(Int.self, forKey: .topK)
        }

        /// The trainer's options for a training phase that began at update `startStep`.
        public func options(startStep: Int) -> DistillationOptions {
            var kd = DistillationOptions(teacher: teacher, steps: steps, temperature: temperature, schedule: schedule)
            kd.weight = weight
            kd.topK = topK
            kd.startStep = startStep
            return kd
        }
    }

    /// Settings every stage has; each is optional in the file and resolved from the stage, then
    /// `defaults`, then the built-in value shown in `Settings.builtIn`.
    public struct Settings: Codable, Equatable, Sendable {
        public var batch: Int?
        public var seq: Int?
        public var accumulation: Int?
        public var lr: Float?
        public var schedule: LearningRateSchedule.Kind?
        /// Warmup as a fraction of the stage's updates.
        public var warmup: Double?
        public var minLr: Float?
        public var weightDecay: Float?
        public var beta1: Float?
        public var beta2: Float?
        public var epsilon: Float?
        /// Global gradient-norm clip (0: none).
        public var clip: Float?
        public var replay: Replay?
        /// Prepend the domain's prompt token to every sequence.
        public var prompts: Bool?
        /// Validation of every seen domain every N updates (0: only at stage ends).
        public var evalEvery: Int?
        public var evalBatches: Int?
        public var checkpointEvery: Int?
        /// Progress line and metrics record every N updates.
        public var logEvery: Int?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case batch, seq, accumulation, lr, schedule, warmup, minLr, weightDecay, beta1, beta2, epsilon,
                 clip, replay, prompts, evalEvery, evalBatches, checkpointEvery, logEvery
        }

        public init() {}

        /// The values used when neither the stage nor `defaults` sets one (the ELLE reference,
        /// scaled down: linear schedule with 8% warmup, Adam (0.9, 0.98), weight decay 0.01).
        public static func builtIn(context: Int) -> Settings {
            var s = Settings()
            s.batch = 8; s.seq = context; s.accumulation = 1
            s.lr = 5e-4; s.schedule = .linear; s.warmup = 0.08; s.minLr = 0
            s.weightDecay = 0.01; s.beta1 = 0.9; s.beta2 = 0.98; s.epsilon = 1e-8; s.clip = 0
            s.replay = Replay(); s.prompts = true
            s.evalEvery = 0; s.evalBatches = 10; s.checkpointEvery = 0; s.logEvery = 10
            return s
        }

        /// Each field from `self` where set, else from `base`.
        public func over(_ base: Settings) -> Settings {
            var r = base
            if let batch { r.batch = batch }
            if let seq { r.seq = seq }
            if let accumulation { r.accumulation = accumulation }
            if let lr { r.lr = lr }
            if let schedule { r.schedule = schedule }
            if let warmup { r.warmup = warmup }
            if let minLr { r.minLr = minLr }
            if let weightDecay { r.weightDecay = weightDecay }
            if let beta1 { r.beta1 = beta1 }
            if let beta2 { r.beta2 = beta2 }
            if let epsilon { r.epsilon = epsilon }
            if let clip { r.clip = clip }
            if let replay { r.replay = replay }
            if let prompts { r.prompts = prompts }
            if let evalEvery { r.evalEvery = evalEvery }
            if let evalBatches { r.evalBatches = evalBatches }
            if let checkpointEvery { r.checkpointEvery = checkpointEvery }
            if let logEvery { r.logEvery = logEvery }
            return r
        }

        static func decode(_ c: KeyedDecodingContainer<AnyCodingKey>) throws -> Settings {
            func value<T: Decodable>(_ key: CodingKeys, _ type: T.Type) throws -> T? {
                try c.decodeIfPresent(T.self, forKey: AnyCodingKey(stringValue: key.rawValue))
            }
            var s = Settings()
            s.batch = try value(.batch, Int.self)
            s.seq = try value(.seq, Int.self)
            s.accumulation = try value(.accumulation, Int.self)
            s.lr = try value(.lr, Float.self)
            s.schedule = try value(.schedule, LearningRateSchedule.Kind.self)
            s.warmup = try value(.warmup, Double.self)
            s.minLr = try value(.minLr, Float.self)
            s.weightDecay = try value(.weightDecay, Float.self)
            s.beta1 = try value(.beta1, Float.self)
            s.beta2 = try value(.beta2, Float.self)
            s.epsilon = try value(.epsilon, Float.self)
            s.clip = try value(.clip, Float.self)
            s.replay = try value(.replay, Replay.self)
            s.prompts = try value(.prompts, Bool.self)
            s.evalEvery = try value(.evalEvery, Int.self)
            s.evalBatches = try value(.evalBatches, Int.self)
            s.checkpointEvery = try value(.checkpointEvery, Int.self)
            s.logEvery = try value(.logEvery, Int.self)
            return s
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            self = try Settings.decode(try decoder.container(keyedBy: AnyCodingKey.self))
        }
    }

    /// One domain of the stream.
    public struct Stage: Decodable, Sendable {
        public var domain: String
        public var steps: Int
        /// Growth before this stage (not on the first).
        public var grow: GrowthPlan?
        /// Function recovering warmup after the growth.
        public var frw: Warmup?
        /// Knowledge inheritance during the stage's training phase.
        public var ki: KI?
        /// This stage's overrides of `defaults`.
        public var settings: Settings

        enum StageKeys: String, CodingKey, CaseIterable { case domain, steps, grow, frw, ki }
        struct AllKeys: CodingKey, CaseIterable {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
            static var allCases: [AllKeys] {
                (StageKeys.allCases.map(\.rawValue) + Settings.CodingKeys.allCases.map(\.rawValue)).map(AllKeys.init)
            }
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(AllKeys.self)
            let c = try decoder.container(keyedBy: StageKeys.self)
            domain = try c.decode(String.self, forKey: .domain)
            steps = try c.decode(Int.self, forKey: .steps)
            grow = try c.decodeIfPresent(GrowthPlan.self, forKey: .grow)
            frw = try c.decodeIfPresent(Warmup.self, forKey: .frw)
            ki = try c.decodeIfPresent(KI.self, forKey: .ki)
            settings = try Settings.decode(try decoder.container(keyedBy: AnyCodingKey.self))
        }
    }

    /// Settings shared by all stages.
    public var defaults: Settings

    enum CodingKeys: String, CodingKey, CaseIterable { case name, model, data, seed, keepCheckpoints, defaults, stages }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? "lifelong"
        model = try c.decode(ModelSpec.self, forKey: .model)
        data = try c.decode(String.self, forKey: .data)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 1
        keepCheckpoints = try c.decodeIfPresent(Int.self, forKey: .keepCheckpoints) ?? 3
        defaults = try c.decodeIfPresent(Settings.self, forKey: .defaults) ?? Settings()
        stages = try c.decode([Stage].self, forKey: .stages)
    }

    /// The settings of stage `index` with every field resolved.
    public func settings(ofStage index: Int) -> Settings {
        stages[index].settings.over(defaults.over(.builtIn(context: model.context)))
    }

    // MARK: loading and validation

    /// Reads and validates a plan; every error names the file and the field.
    public static func load(path: String) throws -> StagePlan {
        guard let text = FileManager.default.contents(atPath: path).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw PlanError(path: path, field: nil, "cannot be read (missing or not UTF-8 text)")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String = "plan") throws -> StagePlan {
        let plan: StagePlan
        do {
            plan = try YAMLDecoder().decode(StagePlan.self, from: text)
        } catch let error as DecodingError {
            throw PlanError(path: path, decoding: error)
        } catch {
            throw PlanError(path: path, field: nil, "is not valid YAML: \(error)")
        }
        try plan.validate(path: path)
        return plan
    }

    /// Checks everything that does not need the data: sizes, ranges, growth targets against the
    /// model they grow, and that only later stages grow or warm up.
    public func validate(path: String = "plan") throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw PlanError(path: path, field: field, why) }
        }
        let initial = model.config(vocab: 2)
        do { try initial.validate() } catch let error as ConfigError {
            throw PlanError(path: path, field: "model.\(error.field)", error.message)
        }
        try check(!stages.isEmpty, "stages", "must list at least one stage")
        try check(keepCheckpoints >= 1, "keepCheckpoints", "must be at least 1 (got \(keepCheckpoints))")
        var current = initial
        var seen: [String: Int] = [:]
        for (i, stage) in stages.enumerated() {
            let at = "stages[\(i)]"
            try check(!stage.domain.isEmpty, "\(at).domain", "must name a domain")
            if let earlier = seen[stage.domain] {
                try check(false, "\(at).domain", "\(stage.domain) was already trained in stages[\(earlier)]")
            }
            seen[stage.domain] = i
            try check(stage.steps >= 1, "\(at).steps", "must be at least 1 (got \(stage.steps))")
            if i == 0 {
                try check(stage.grow == nil, "\(at).grow", "the first stage trains the initial model; growth happens before later stages")
                try check(stage.frw == nil, "\(at).frw", "warmup follows a growth; the first stage has none")
            }
            if let grow = stage.grow {
                do { try grow.validate(source: current) } catch let error as GrowthPlanError {
                    throw PlanError(path: path, field: "\(at).grow.\(error.field)", error.message)
                }
                current = grow.target(source: current)
            }
            if let frw = stage.frw {
                try check(stage.grow != nil, "\(at).frw", "warmup recovers from a growth; this stage has no grow block")
                try check(frw.steps >= 1, "\(at).frw.steps", "must be at least 1 (got \(frw.steps))")
                if let lr = frw.lr { try check(lr > 0 && lr.isFinite, "\(at).frw.lr", "must be positive (got \(lr))") }
            }
            if let ki = stage.ki {
                try check(ki.teacher != "previous" || i > 0, "\(at).ki.teacher", "previous names the model that ended the previous stage; the first stage has none")
                do { try ki.options(startStep: 0).validate() } catch let error as ConfigError {
                    throw PlanError(path: path, field: "\(at).ki.\(error.field.replacingOccurrences(of: "distillation.", with: ""))", error.message)
                }
            }
            let s = settings(ofStage: i)
            try check(s.batch! >= 1, "\(at).batch", "must be at least 1 (got \(s.batch!))")
            try check(s.seq! >= 2 && s.seq! <= current.context, "\(at).seq", "must be in 2...\(current.context) (the model's context), got \(s.seq!)")
            try check(s.accumulation! >= 1, "\(at).accumulation", "must be at least 1 (got \(s.accumulation!))")
            try check(s.lr! > 0 && s.lr!.isFinite, "\(at).lr", "must be positive (got \(s.lr!))")
            try check(s.warmup! >= 0 && s.warmup! < 1, "\(at).warmup", "is a fraction of the stage's updates, in [0, 1) (got \(s.warmup!))")
            try check(s.minLr! >= 0, "\(at).minLr", "must not be negative")
            try check(s.weightDecay! >= 0, "\(at).weightDecay", "must not be negative")
            try check(s.beta1! >= 0 && s.beta1! < 1, "\(at).beta1", "must be in [0, 1)")
            try check(s.beta2! >= 0 && s.beta2! < 1, "\(at).beta2", "must be in [0, 1)")
            try check(s.epsilon! > 0, "\(at).epsilon", "must be positive")
            try check(s.clip! >= 0, "\(at).clip", "must not be negative (0: no clipping)")
            let replay = s.replay!
            try check(replay.ratio >= 0 && replay.ratio <= 1, "\(at).replay.ratio", "must be in [0, 1] (got \(replay.ratio))")
            try check(replay.interval >= 1, "\(at).replay.interval", "must be at least 1")
            try check(replay.evalBatches >= 1, "\(at).replay.evalBatches", "must be at least 1")
            try check(s.evalEvery! >= 0, "\(at).evalEvery", "must not be negative (0: only at stage ends)")
            try check(s.evalBatches! >= 1, "\(at).evalBatches", "must be at least 1")
            try check(s.checkpointEvery! >= 0, "\(at).checkpointEvery", "must not be negative")
            try check(s.logEvery! >= 1, "\(at).logEvery", "must be at least 1")
        }
    }
}

/// A mistake in a stage plan, naming the file and the field.
public struct PlanError: Error, CustomStringConvertible {
    public let path: String
    public let field: String?
    public let message: String

    public init(path: String, field: String?, _ message: String) {
        self.path = path
        self.field = field
        self.message = message
    }

    init(path: String, decoding error: DecodingError) {
        self.path = path
        switch error {
        case .keyNotFound(let key, let context):
            field = describeCodingPath(context.codingPath + [key])
            message = "is required but missing"
        case .typeMismatch(let type, let context):
            field = describeCodingPath(context.codingPath)
            message = "has the wrong type (expected \(PlanError.name(of: type)))"
        case .valueNotFound(let type, let context):
            field = describeCodingPath(context.codingPath)
            message = "is empty (expected \(PlanError.name(of: type)))"
        case .dataCorrupted(let context):
            field = describeCodingPath(context.codingPath)
            message = context.debugDescription
        @unknown default:
            field = nil
            message = "\(error)"
        }
    }

    static func name(of type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "text"
        default: return "\(type)"
        }
    }

    public var description: String {
        if let field { return "\(path): \(field): \(message)" }
        return "\(path) \(message)"
    }
}
