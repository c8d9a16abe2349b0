import Communication
import Foundation
import Model
import Tensors

/// Growth when the validation curve flattens (`elle train --grow-on-plateau`; docs/GROWTH.md,
/// "When to grow"): at every validation rank 0 fits the loss against ln(run FLOPs) and grows to the
/// next size of the ladder once the current model's slope has fallen below what the grown model is
/// expected to deliver per FLOP.
///
/// The rule, from the payoff measurements (docs/RESULTS.md, "Where growth pays off"): per update a
/// grown model makes the progress the small one made while it was not yet limited by its capacity,
/// at `costRatio` (r) times the FLOPs per update. With the loss linear in ln F over a short
/// stretch, dL/dF = s / F for a slope s, so at the same F the small model gains -s_now / F per FLOP
/// and the grown one about -s_ref / (r F), s_ref being the small model's slope over its first
/// `window` validations at this size. Grow when s_now > s_ref / r (slopes are negative): when the
/// slope over the last `window` validations has fallen below 1/r of the reference. On the payoff
/// sweep's 1/64 model the slopes were -0.66, -0.47 and -0.14 per ln FLOP over x1-x4, x4-x16 and
/// x16-x64: with r of 1.4 (to 2/64) the rule fires near x16, where 2/64 tied, and with r of 2.7
/// (to 2/128) between x16 and x64, where 2/128 passed it.
///
/// The run's FLOP budget is `steps` updates of the starting model; after a growth every update costs
/// more, so the run needs fewer of them, and the learning-rate schedule runs on FLOPs (its position
/// is the FLOPs spent over the starting model's FLOPs per update): a growth shortens the horizon in
/// updates by the cost ratio and the schedule ends where the budget does.
public struct PlateauPolicy: Codable, Equatable, Sendable {
    /// The sizes to grow to, in order, each with its growth options.
    public var ladder: [GrowthPlan]
    /// Validations per slope fit (the reference window and the current one).
    public var window: Int
    /// FLOPs per update of the starting model: the unit of the budget and of the schedule.
    public var flopsPerScheduleStep: Double
    /// Ladder entries used so far.
    public var grown = 0
    /// The validations since the model reached its current size and its ramp ended.
    public var points: [Point] = []

    public struct Point: Codable, Equatable, Sendable {
        public var step: Int
        public var flops: Double
        public var loss: Float

        public init(step: Int, flops: Double, loss: Float) {
            self.step = step
            self.flops = flops
            self.loss = loss
        }
    }

    public init(ladder: [GrowthPlan], window: Int = 4, flopsPerScheduleStep: Double = 0) {
        self.ladder = ladder
        self.window = window
        self.flopsPerScheduleStep = flopsPerScheduleStep
    }

    /// What one check saw and decided.
    public struct Check: Equatable, Sendable {
        /// Validations the decision looked at (at this size, after its ramp).
        public var points: Int
        /// nil until there are 2 windows of points.
        public var referenceSlope: Double?
        public var currentSlope: Double?
        public var costRatio: Double
        public var grow: Bool

        /// The metrics record of this check.
        public func record(step: Int, flops: Double, loss: Float, next: String?) -> [String: Any] {
            var r: [String: Any] = ["event": "plateau_check", "step": step, "flops": flops, "valid_loss": Double(loss),
                                    "points": points, "cost_ratio": costRatio, "decision": grow ? "grow" : "wait"]
            if let referenceSlope, let currentSlope {
                r["reference_slope"] = referenceSlope
                r["current_slope"] = currentSlope
                r["threshold"] = referenceSlope / costRatio
            }
            if let next { r["next"] = next }
            return r
        }

        /// The log text of a check with two windows of points (nil before).
        public func summary(window: Int, next: GrowthPlan) -> String? {
            guard let referenceSlope, let currentSlope else { return nil }
            return String(format: "slope %.4f per ln FLOP over the last %d validations, %.4f over the first; growing to %d/%d/%d costs %.2fx per update, so it pays below %.4f: %@",
                          currentSlope, window, referenceSlope, next.layers, next.width, next.heads, costRatio,
                          referenceSlope / costRatio, grow ? "grow" : "wait")
        }
    }

    /// The next size, or nil once the ladder is used up.
    public var next: GrowthPlan? { grown < ladder.count ? ladder[grown] : nil }

    /// The decision over `points` for a growth costing `costRatio` times the FLOPs per update.
    public func decide(costRatio: Double) -> Check {
        var check = Check(points: points.count, costRatio: costRatio, grow: false)
        guard points.count >= 2 * window else { return check }
        let reference = Self.slope(points.prefix(window)), current = Self.slope(points.suffix(window))
        check.referenceSlope = reference
        check.currentSlope = current
        // A reference that did not fall at all: the model cannot use its size's FLOPs; grow.
        check.grow = reference >= 0 || current > reference / costRatio
        return check
    }

    /// Least-squares slope of the loss against ln(FLOPs), in Float64.
    static func slope<C: Collection>(_ points: C) -> Double where C.Element == Point {
        let xs = points.map { log($0.flops) }, ys = points.map { Double($0.loss) }
        let n = Double(xs.count), mx = xs.reduce(0, +) / n, my = ys.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0
        for (x, y) in zip(xs, ys) {
            sxy += (x - mx) * (y - my)
            sxx += (x - mx) * (x - mx)
        }
        return sxx > 0 ? sxy / sxx : 0
    }

    /// Throws naming the first bad field.
    func validate(model: ModelConfig, scheduled: Bool) throws {
        let check = ConfigError.check
        try check(!ladder.isEmpty, "grow-on-plateau", "needs at least one size")
        try check(window >= 2, "plateau-window", "must be at least 2 validations (got \(window))")
        try check(!scheduled, "grow-on-plateau", "and --grow-at do not go together: the policy decides when to grow")
        var shape = model
        shape.ramp = nil
        do {
            try Self.checkLadder(ladder, from: shape, first: grown)
        } catch let error as LadderError {
            throw ConfigError(field: "grow-on-plateau[\(error.index)].\(error.error.field)", message: error.error.message)
        }
    }

    /// A size of a ladder that cannot grow the size before it.
    public struct LadderError: Error {
        public var index: Int
        /// The shape it was to grow.
        public var shape: ModelConfig
        public var error: GrowthPlanError
    }

    /// Checks every size from `first` on against the one before it (entry `first` against
    /// `model`); throws the first that cannot grow it.
    public static func checkLadder(_ ladder: [GrowthPlan], from model: ModelConfig, first: Int = 0) throws {
        var shape = model
        for (i, plan) in ladder.enumerated() where i >= first {
            do {
                try plan.validate(source: shape)
            } catch let error as GrowthPlanError {
                throw LadderError(index: i, shape: shape, error: error)
            }
            shape = plan.target(source: shape)
        }
    }
}

/// A FLOP budget counted in updates of a reference model (a policy run's starting model, a lifelong
/// plan's initial model): how many updates are left at the current size, and where the schedule
/// stands.
public struct FLOPBudget {
    /// FLOPs spent, the whole budget, and the reference model's FLOPs per update.
    public var spent: Double, total: Double, unit: Double

    public init(spent: Double, total: Double, unit: Double) {
        self.spent = spent
        self.total = total
        self.unit = unit
    }

    /// The schedule's position: the FLOPs spent in reference updates.
    public var position: Int { Int((spent / unit).rounded()) }

    /// Updates the rest of the budget pays for at `perUpdate` FLOPs each. The budget is a sum of
    /// per-update FLOPs: a hair of rounding must not add an update.
    public func updatesLeft(at perUpdate: Double) -> Int { max(0, Int(((total - spent) / perUpdate - 1e-6).rounded(.up))) }
}

extension Trainer {
    /// FLOPs per update of the current model (all ranks' micro-batches).
    public var flopsPerUpdate: Double { flopsPerUpdate(of: model.config) }

    /// FLOPs per update of a model of `config` with this run's batch shape.
    public func flopsPerUpdate(of config: ModelConfig) -> Double {
        Double(options.batch * options.seq * globalMicroBatches)
            * FLOPCount.trainingPerToken(config, parameters: config.parameterCount, seq: options.seq)
    }

    /// With a plateau policy, the run's budget: `steps` updates of the starting model.
    private var budget: FLOPBudget? {
        guard let policy = options.growthPolicy, policy.flopsPerScheduleStep > 0 else { return nil }
        return FLOPBudget(spent: flops, total: Double(options.steps) * policy.flopsPerScheduleStep, unit: policy.flopsPerScheduleStep)
    }

    /// The schedule's position: the update count, or with a plateau policy the FLOPs spent in
    /// units of the starting model's updates.
    var schedulePosition: Int { budget?.position ?? step }

    /// Updates the run has in all: `options.steps`, or with a plateau policy this step plus the
    /// updates the FLOP budget left pays for at the current size.
    public var plannedUpdates: Int { budget.map { step + $0.updatesLeft(at: flopsPerUpdate) } ?? options.steps }

    /// Starts the policy's FLOP accounting at the starting model (a fresh run; idempotent).
    func startGrowthPolicy() {
        guard var policy = options.growthPolicy, policy.flopsPerScheduleStep == 0 else { return }
        policy.flopsPerScheduleStep = flopsPerUpdate
        options.growthPolicy = policy
    }

    /// One check of the plateau policy at a validation (collective): records the point (after a
    /// ramp ends) at `flops` (the curve's x: the run's FLOPs, or a lifelong stage's), rank 0
    /// decides, the decision is broadcast, and on "grow" every rank grows to the ladder's next size
    /// (`grow`). Returns nil when the policy is done, the model is in a ramp, or there is no policy.
    public func checkPlateau(validLoss: Float, flops: Double? = nil) throws -> (check: PlateauPolicy.Check, growth: ReceivedGrowth?)? {
        guard var policy = options.growthPolicy, let plan = policy.next, model.config.ramp == nil else { return nil }
        policy.points.append(.init(step: step, flops: flops ?? self.flops, loss: validLoss))
        let target = plan.target(source: model.config)
        let ratio = FLOPCount.trainingPerToken(target, parameters: target.parameterCount, seq: options.seq)
            / FLOPCount.trainingPerToken(model.config, parameters: model.parameterCount, seq: options.seq)
        // Every rank holds the same points (the validation loss is all-reduced in a fixed order),
        // but only rank 0's decision counts: it is broadcast before the growth.
        var check = policy.decide(costRatio: ratio)
        let decision = Buffer<Int64>(count: 1)
        decision[0] = communicator.isRoot && check.grow ? 1 : 0
        try communicator.broadcast(decision, label: "plateau decision from rank 0 after update \(step)")
        check.grow = decision[0] == 1
        options.growthPolicy = policy
        guard check.grow else { return (check, nil) }
        let grown = try grow(plan)
        policy.grown += 1
        policy.points = []
        options.growthPolicy = policy
        return (check, grown)
    }
}
