import Foundation
import Model
import Tensors
import Training
import Yams

/// A lifelong run in one YAML file: the initial model, the prepared data, and one stage per
/// domain in arrival order, each with its steps, growth, warmup, replay and optimization
/// settings. `defaults` apply to every stage; a stage may override any of them. Keys are the
/// Swift names (camelCase); an unknown key is an error naming its path. See docs/LIFELONG.md.
///
/// Parsing resolves everything once: every stage holds its complete `Settings`, so no reader
/// looks up defaults or unwraps a value.
public struct StagePlan: Decodable, Sendable {
    public var name: String
    public var model: ModelSpec
    /// A folder written by `elle data prepare` (its manifest names the domains).
    public var data: String
    public var seed: UInt64
    /// Step checkpoints kept besides every stage end's (the newest K).
    public var keepCheckpoints: Int
    /// Also checkpoint when this many minutes have passed since the last checkpoint (0: never by
    /// time); rank 0's clock decides for every rank.
    public var checkpointMinutes: Double
    /// A folder for the run's TensorBoard event files (one run per folder), or nil.
    public var tensorboard: String?
    /// The operands of the model's matrix products in every stage (`elle train --precision`
    /// overrides it): fp32, or bf16 mixed precision.
    public var precision: Precision
    /// ZeRO stage of every stage's training (`elle train --zero` overrides it): 1 shards Adam's
    /// moments over the ranks, 0 (the default) does not. Results do not depend on it.
    public var zero: Int
    /// What gradients cross the network as (`elle train --allreduce-dtype` overrides it): fp32
    /// (the default) or bf16.
    public var allreduceDType: Precision
    public var stages: [Stage]
    /// Growth decided by the validation curve inside every stage's training (`PlateauPolicy`;
    /// docs/GROWTH.md, "When to grow"), or nil: growth only where a stage says `grow`. With it a
    /// stage's `steps` is a FLOP budget: that many updates of the plan's initial model.
    public var growOnPlateau: PlateauPlan?

    /// `growOnPlateau: {ladder: [{layers, width, heads, ...}, ...], window: 4}`: the sizes in order,
    /// each a growth plan (keys as `grow`; depthMode defaults to identity and moments to carry here).
    public struct PlateauPlan: Decodable, Sendable {
        public var ladder: [GrowthPlan]
        public var window: Int

        enum CodingKeys: String, CodingKey, CaseIterable { case ladder, window }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            var list = try c.nestedUnkeyedContainer(forKey: .ladder)
            ladder = []
            while !list.isAtEnd {
                let entry = try list.superDecoder()
                var plan = try GrowthPlan(from: entry)
                let keys = try entry.container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
                if !keys.contains("depthMode") { plan.depthMode = .identity }
                if !keys.contains("moments") { plan.moments = .carry }
                if !keys.contains("seed") { plan.seed = UInt64(ladder.count + 1) }
                ladder.append(plan)
            }
            window = try c.decodeIfPresent(Int.self, forKey: .window) ?? 4
        }

        /// A fresh policy for this ladder.
        public var policy: PlateauPolicy { PlateauPolicy(ladder: ladder, window: window) }
    }

    /// A checkpoint (file or run folder, e.g. one `elle import` wrote) whose model the first
    /// stage starts from instead of a random one; `model` must describe its shape.
    public var initFrom: String?

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

    /// One domain of the stream.
    public struct Stage: Sendable {
        public var domain: String
        public var steps: Int
        /// Growth before this stage (not on the first).
        public var grow: GrowthPlan?
        /// Function recovering warmup after the growth.
        public var frw: Warmup?
        /// Knowledge inheritance during the stage's training phase.
        public var ki: KI?
        /// The stage's settings, resolved (its own keys over `defaults` over the built-in values).
        public var settings: Settings

        enum Keys: String, CodingKey, CaseIterable { case domain, steps, grow, frw, ki }

        /// Reads a stage whose settings default to `base`.
        init(from decoder: Decoder, base: Settings) throws {
            try decoder.rejectUnknownKeys(allowed: Keys.allCases.map(\.rawValue) + Settings.keys)
            let c = try decoder.container(keyedBy: Keys.self)
            domain = try c.decode(String.self, forKey: .domain)
            steps = try c.decode(Int.self, forKey: .steps)
            grow = try c.decodeIfPresent(GrowthPlan.self, forKey: .grow)
            frw = try c.decodeIfPresent(Warmup.self, forKey: .frw)
            ki = try c.decodeIfPresent(KI.self, forKey: .ki)
            settings = try base.overridden(by: try decoder.container(keyedBy: AnyCodingKey.self))
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, model, initFrom, data, seed, keepCheckpoints, checkpointMinutes, tensorboard, precision, zero, allreduceDType, defaults, stages, growOnPlateau }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? "lifelong"
        model = try c.decode(ModelSpec.self, forKey: .model)
        initFrom = try c.decodeIfPresent(String.self, forKey: .initFrom)
        data = try c.decode(String.self, forKey: .data)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 1
        keepCheckpoints = try c.decodeIfPresent(Int.self, forKey: .keepCheckpoints) ?? 3
        checkpointMinutes = try c.decodeIfPresent(Double.self, forKey: .checkpointMinutes) ?? TrainingOptions.defaultCheckpointMinutes
        tensorboard = try c.decodeIfPresent(String.self, forKey: .tensorboard)
        precision = try c.decodeIfPresent(Precision.self, forKey: .precision) ?? .fp32
        zero = try c.decodeIfPresent(Int.self, forKey: .zero) ?? 0
        allreduceDType = try c.decodeIfPresent(Precision.self, forKey: .allreduceDType) ?? .fp32
        growOnPlateau = try c.decodeIfPresent(PlateauPlan.self, forKey: .growOnPlateau)
        var defaults = Settings(context: model.context)
        if c.contains(.defaults) {
            let d = try c.superDecoder(forKey: .defaults)
            try d.rejectUnknownKeys(allowed: Settings.keys)
            defaults = try defaults.overridden(by: try d.container(keyedBy: AnyCodingKey.self))
        }
        var list = try c.nestedUnkeyedContainer(forKey: .stages)
        stages = []
        while !list.isAtEnd { stages.append(try Stage(from: try list.superDecoder(), base: defaults)) }
    }

    /// The resolved settings of stage `index`.
    public func settings(ofStage index: Int) -> Settings { stages[index].settings }

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
        try check(checkpointMinutes >= 0 && checkpointMinutes.isFinite, "checkpointMinutes", "must be 0 (off) or a positive number of minutes")
        if let growOnPlateau {
            try check(!growOnPlateau.ladder.isEmpty, "growOnPlateau.ladder", "needs at least one size")
            try check(growOnPlateau.window >= 2, "growOnPlateau.window", "must be at least 2 validations (got \(growOnPlateau.window))")
            do { try PlateauPolicy.checkLadder(growOnPlateau.ladder, from: initial) } catch let error as PlateauPolicy.LadderError {
                throw PlanError(path: path, field: "growOnPlateau.ladder[\(error.index)].\(error.error.field)", error.error.message)
            }
            for (i, stage) in stages.enumerated() {
                try check(stage.grow == nil, "stages[\(i)].grow", "a plan with growOnPlateau grows when the validation curve says so; drop the stage's grow block (or growOnPlateau)")
                try check(stage.settings.evalEvery > 0, "stages[\(i)].evalEvery", "must be positive with growOnPlateau: the policy decides at the stage's validations")
            }
        }
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
                do { try ki.options(startStep: 0, phaseSteps: stage.steps).validate() } catch let error as ConfigError {
                    throw PlanError(path: path, field: "\(at).ki.\(error.field.replacingOccurrences(of: "distillation.", with: ""))", error.message)
                }
            }
            try stage.settings.validate(at: at, context: current.context, path: path)
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
