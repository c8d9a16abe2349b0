import Corpus
import Model
import Training

extension StagePlan {
    /// The settings every stage has, resolved: a stage's own keys over the plan's `defaults` over
    /// the built-in values below (the ELLE reference, scaled down: linear schedule with 8% warmup,
    /// Adam (0.9, 0.98), weight decay 0.01; sequences as long as the model's context).
    public struct Settings: Equatable, Sendable {
        public var batch = 8
        public var seq: Int
        public var accumulation = 1
        public var lr: Float = 5e-4
        public var schedule: LearningRateSchedule.Kind = .linear
        /// Warmup as a fraction of the stage's updates.
        public var warmup = 0.08
        public var minLr: Float = 0
        public var weightDecay: Float = 0.01
        public var beta1: Float = 0.9
        public var beta2: Float = 0.98
        public var epsilon: Float = 1e-8
        /// Global gradient-norm clip (0: none).
        public var clip: Float = 0
        public var replay = Replay()
        /// Prepend the domain's prompt token to every sequence.
        public var prompts = true
        /// Validation of every seen domain every N updates (0: only at stage ends).
        public var evalEvery = 0
        public var evalBatches = 10
        public var checkpointEvery = 0
        /// Progress line and metrics record every N updates.
        public var logEvery = 10

        /// The built-in settings of a model with this context.
        public init(context: Int) { seq = context }

        /// One entry per setting: its key in the file and where it goes. Keys, decoding and
        /// overriding all come from this one table.
        struct Field {
            let key: String
            let read: (inout Settings, KeyedDecodingContainer<AnyCodingKey>) throws -> Void

            init<T: Decodable>(_ key: String, _ path: WritableKeyPath<Settings, T>) {
                self.key = key
                read = { settings, container in
                    if let value = try container.decodeIfPresent(T.self, forKey: AnyCodingKey(stringValue: key)) {
                        settings[keyPath: path] = value
                    }
                }
            }
        }

        nonisolated(unsafe) static let fields: [Field] = [
            Field("batch", \.batch), Field("seq", \.seq), Field("accumulation", \.accumulation), Field("lr", \.lr),
            Field("schedule", \.schedule), Field("warmup", \.warmup), Field("minLr", \.minLr),
            Field("weightDecay", \.weightDecay), Field("beta1", \.beta1), Field("beta2", \.beta2),
            Field("epsilon", \.epsilon), Field("clip", \.clip), Field("replay", \.replay), Field("prompts", \.prompts),
            Field("evalEvery", \.evalEvery), Field("evalBatches", \.evalBatches),
            Field("checkpointEvery", \.checkpointEvery), Field("logEvery", \.logEvery),
        ]

        static var keys: [String] { fields.map(\.key) }

        /// These settings with every key the object in `container` sets read over them.
        func overridden(by container: KeyedDecodingContainer<AnyCodingKey>) throws -> Settings {
            var settings = self
            for field in Settings.fields { try field.read(&settings, container) }
            return settings
        }

        /// Throws a `PlanError` naming the first setting out of range (`at`: "stages[i]").
        func validate(at: String, context: Int, path: String) throws {
            func check(_ ok: Bool, _ field: String, _ why: String) throws {
                if !ok { throw PlanError(path: path, field: "\(at).\(field)", why) }
            }
            try check(batch >= 1, "batch", "must be at least 1 (got \(batch))")
            try check(seq >= 2 && seq <= context, "seq", "must be in 2...\(context) (the model's context), got \(seq)")
            try check(accumulation >= 1, "accumulation", "must be at least 1 (got \(accumulation))")
            try check(lr > 0 && lr.isFinite, "lr", "must be positive (got \(lr))")
            try check(warmup >= 0 && warmup < 1, "warmup", "is a fraction of the stage's updates, in [0, 1) (got \(warmup))")
            try check(minLr >= 0, "minLr", "must not be negative")
            try check(weightDecay >= 0, "weightDecay", "must not be negative")
            try check(beta1 >= 0 && beta1 < 1, "beta1", "must be in [0, 1)")
            try check(beta2 >= 0 && beta2 < 1, "beta2", "must be in [0, 1)")
            try check(epsilon > 0, "epsilon", "must be positive")
            try check(clip >= 0, "clip", "must not be negative (0: no clipping)")
            try check(replay.ratio >= 0 && replay.ratio <= 1, "replay.ratio", "must be in [0, 1] (got \(replay.ratio))")
            try check(replay.interval >= 1, "replay.interval", "must be at least 1")
            try check(replay.evalBatches >= 1, "replay.evalBatches", "must be at least 1")
            try check(evalEvery >= 0, "evalEvery", "must not be negative (0: only at stage ends)")
            try check(evalBatches >= 1, "evalBatches", "must be at least 1")
            try check(checkpointEvery >= 0, "checkpointEvery", "must not be negative")
            try check(logEvery >= 1, "logEvery", "must be at least 1")
        }

        /// The trainer's options for a phase of `steps` updates with these settings.
        public func trainingOptions(plan: StagePlan, tokenizer: String, steps: Int, domain: String, maskedLM: MaskedLM?) -> TrainingOptions {
            let schedule = LearningRateSchedule(kind: self.schedule, peak: lr, warmup: Int((warmup * Double(steps)).rounded()),
                                                total: steps, minimum: minLr, initial: self.schedule == .inverseSqrt ? 1e-7 : 0)
            var options = TrainingOptions(batch: batch, seq: seq, steps: steps, schedule: schedule, dataPath: plan.data)
            options.accumulation = accumulation
            options.adam = AdamWSettings(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
            options.clip = clip > 0 ? clip : nil
            options.seed = plan.seed
            options.logEvery = logEvery
            options.evalBatches = evalBatches
            options.tokenizer = tokenizer
            options.domain = domain
            options.maskedLM = maskedLM
            options.precision = plan.precision
            options.zero = plan.zero == 0 ? nil : plan.zero
            options.allreduceDType = plan.allreduceDType == .fp32 ? nil : plan.allreduceDType
            return options
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
        /// T_kd in updates of the stage's training phase (default: all of them).
        public var steps: Int?
        public var temperature: Float = DistillationOptions.defaults.temperature
        public var schedule: DistillationSchedule = DistillationOptions.defaults.schedule
        /// a_t of the constant schedule.
        public var weight: Float = 0.5
        /// Keep the teacher's K most probable tokens per position (default: all).
        public var topK: Int?
        /// Also end distillation once the student's validation loss on the stage's domain is at
        /// or below the teacher's (`teacher`), or only after `steps` (`steps`). Default: `steps`
        /// for `teacher: previous` (the grown student starts as that model and passes it on the
        /// new domain at the stage's first validation, so the rule would end KI at once; measured
        /// in docs/RESULTS.md "Knowledge inheritance on the stream"), else the run default.
        public var until: DistillationStop
        /// When distillation begins: `first` update, or once the teacher is far enough `ahead`.
        /// Default: `first` for `teacher: previous` (the student starts as that model), else the
        /// run default.
        public var start: DistillationStart

        enum CodingKeys: String, CodingKey, CaseIterable { case teacher, steps, temperature, schedule, weight, topK, until, start }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            teacher = try c.decode(String.self, forKey: .teacher)
            steps = try c.decodeIfPresent(Int.self, forKey: .steps)
            temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? temperature
            schedule = try c.decodeIfPresent(DistillationSchedule.self, forKey: .schedule) ?? schedule
            weight = try c.decodeIfPresent(Float.self, forKey: .weight) ?? weight
            topK = try c.decodeIfPresent(Int.self, forKey: .topK)
            until = try c.decodeIfPresent(DistillationStop.self, forKey: .until)
                ?? (teacher == "previous" ? .steps : DistillationOptions.defaults.until)
            start = try c.decodeIfPresent(DistillationStart.self, forKey: .start)
                ?? (teacher == "previous" ? .first : DistillationOptions.defaults.start)
        }

        /// The trainer's options for a training phase of `phaseSteps` updates that began at
        /// update `startStep`.
        public func options(startStep: Int, phaseSteps: Int) -> DistillationOptions {
            var kd = DistillationOptions(teacher: teacher, steps: steps ?? phaseSteps, temperature: temperature, schedule: schedule, until: until, start: start)
            kd.weight = weight
            kd.topK = topK
            kd.startStep = startStep
            return kd
        }
    }
}
