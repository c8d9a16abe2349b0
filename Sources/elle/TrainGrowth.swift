import ArgumentParser
import Foundation
import Model
import Training

/// `elle train --grow-at STEP --grow-to L/D/H ...`: a growth event inside a run. The options are
/// `elle grow`'s with a `grow-` prefix and mean the same.
struct TrainGrowthOptions: ParsableArguments {
    @Option(help: "Grow the model after this update; the run continues on the grown model with the same schedule and data order.")
    var growAt: Int?
    @Option(help: "Shape after the growth: LAYERS/WIDTH/HEADS (the head dimension stays fixed).") var growTo: String?
    @Option(help: "MLP width after the growth (default: the same ffn/width ratio).") var growFfn: Int?
    @Option(help: "How inserted layers start: copy (ELLE, default), identity, or stack (G_stack).") var growDepthMode: GrowthPlan.DepthMode?
    @Option(help: "Which old unit a new one copies: random (ELLE, default) or round-robin.") var growSource: GrowthPlan.Source?
    @Option(help: "Standard deviation of the symmetry-breaking noise (default 0.01; 0: none).") var growNoise: Float?
    @Option(help: "Where the noise goes: copies (default) or all.") var growNoiseScope: GrowthPlan.NoiseScope?
    @Option(help: "Adam moments: reset (the optimizer restarts, default) or carry (mapped with the growth).")
    var growMoments: GrowthPlan.Moments?
    @Option(help: "Seed for the layer choice, the index maps and the noise (default: --seed).") var growSeed: UInt64?
    @Option(help: "Masked ramp: the new units fade in over this many updates (default: none).") var growRamp: Int?
    @Option(help: ArgumentHelp("Grow when the validation curve flattens, to these sizes in order: L/D/H[,L/D/H...]. Rank 0 decides at every validation (--eval-every); --steps becomes a FLOP budget (that many updates of the starting model) and the schedule runs on FLOPs. The --grow-* options shape every growth; here depth mode defaults to identity and moments to carry. See docs/GROWTH.md.", valueName: "sizes"))
    var growOnPlateau: String?
    @Option(help: "Validations in each slope fit of --grow-on-plateau (default 4).") var plateauWindow: Int?

    var isSet: Bool {
        growAt != nil || growTo != nil || growFfn != nil || growDepthMode != nil || growSource != nil || growNoise != nil
            || growNoiseScope != nil || growMoments != nil || growSeed != nil || growRamp != nil || growOnPlateau != nil
            || plateauWindow != nil
    }

    func validate() throws {
        guard isSet else { return }
        if let growOnPlateau {
            if growAt != nil || growTo != nil {
                throw ValidationError("--grow-on-plateau decides when to grow: it does not go with --grow-at/--grow-to")
            }
            for size in growOnPlateau.split(separator: ",") { _ = try parseShape(String(size), "--grow-on-plateau") }
            if let plateauWindow, plateauWindow < 2 { throw ValidationError("--plateau-window must be at least 2 (got \(plateauWindow))") }
        } else {
            if plateauWindow != nil { throw ValidationError("--plateau-window goes with --grow-on-plateau") }
            guard let growAt, let growTo else { throw ValidationError("--grow-at and --grow-to go together (the other --grow-* options need both)") }
            if growAt < 0 { throw ValidationError("--grow-at must not be negative (got \(growAt))") }
            _ = try parseShape(growTo, "--grow-to")
        }
        if let growRamp, growRamp < 1 { throw ValidationError("--grow-ramp must be at least 1 update (got \(growRamp))") }
        if let growFfn, growFfn < 1 { throw ValidationError("--grow-ffn must be at least 1 (got \(growFfn))") }
        if let growNoise, !(growNoise >= 0 && growNoise.isFinite) {
            throw ValidationError("--grow-noise must be a finite standard deviation >= 0 (got \(growNoise))")
        }
    }

    /// The scheduled growth, checked against the model it will grow (nil without --grow-at).
    func schedule(source: ModelConfig, steps: Int, seed: UInt64) throws -> ScheduledGrowth? {
        guard let growAt, let growTo else { return nil }
        if growAt >= steps {
            throw CommandError("--grow-at \(growAt) must be below --steps \(steps) (the growth happens after that update)")
        }
        let plan = self.plan(try parseShape(growTo, "--grow-to"), seed: seed)
        do {
            try plan.validate(source: source)
        } catch let error as GrowthPlanError {
            throw CommandError("--grow-to \(growTo) cannot grow \(source): \(error.field) \(error.message)")
        }
        return ScheduledGrowth(step: growAt, plan: plan)
    }
}

extension TrainGrowthOptions {
    /// A growth to `shape` with the --grow-* options (`defaults` for the ones not given).
    func plan(_ shape: (layers: Int, width: Int, heads: Int), seed: UInt64, defaults: GrowthPlan? = nil) -> GrowthPlan {
        var plan = defaults ?? GrowthPlan(layers: 0, width: 0, heads: 0)
        plan.layers = shape.layers
        plan.width = shape.width
        plan.heads = shape.heads
        plan.ffn = growFfn
        plan.seed = growSeed ?? seed
        plan.depthMode = growDepthMode ?? plan.depthMode
        plan.source = growSource ?? plan.source
        plan.noise = growNoise ?? plan.noise
        plan.noiseScope = growNoiseScope ?? plan.noiseScope
        plan.moments = growMoments ?? plan.moments
        plan.ramp = growRamp
        return plan
    }

    /// The plateau policy of --grow-on-plateau (nil without it), checked against the model it grows.
    func policy(source: ModelConfig, seed: UInt64) throws -> PlateauPolicy? {
        guard let growOnPlateau else { return nil }
        let defaults = GrowthPlan(layers: 0, width: 0, heads: 0, depthMode: .identity, moments: .carry)
        let sizes = growOnPlateau.split(separator: ",").map(String.init)
        let ladder = try sizes.enumerated().map { i, size in
            var plan = self.plan(try parseShape(size, "--grow-on-plateau"), seed: seed, defaults: defaults)
            plan.ffn = nil
            plan.seed = (growSeed ?? seed) &+ UInt64(i)
            return plan
        }
        do {
            try PlateauPolicy.checkLadder(ladder, from: source)
        } catch let error as PlateauPolicy.LadderError {
            throw CommandError("--grow-on-plateau \(sizes[error.index]) cannot grow \(error.shape): \(error.error.field) \(error.error.message)")
        }
        return PlateauPolicy(ladder: ladder, window: plateauWindow ?? 4)
    }

}

/// A model shape LAYERS/WIDTH/HEADS, as `--grow-to` and `elle bench grow` take it.
func parseShape(_ text: String, _ flag: String) throws -> (layers: Int, width: Int, heads: Int) {
    let parts = text.split(separator: "/").compactMap { Int($0) }
    guard parts.count == 3, parts.allSatisfy({ $0 > 0 }) else {
        throw ValidationError("\(flag) must be LAYERS/WIDTH/HEADS, e.g. 12/768/12 (got \(text))")
    }
    return (parts[0], parts[1], parts[2])
}
