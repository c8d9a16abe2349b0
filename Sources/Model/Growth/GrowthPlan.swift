import Tensors

/// One growth event: the target shape and how to get there (docs/GROWTH.md).
///
/// Codable so a lifelong stage plan can hold it; only `layers`, `width` and `heads` are required
/// when decoding, every other field has the default shown.
public struct GrowthPlan: Codable, Equatable, Sendable {
    /// How inserted layers start.
    public enum DepthMode: String, Codable, Sendable, CaseIterable {
        /// ELLE: a copy of an existing layer, inserted right after it (changes the function).
        case copy
        /// A copy whose attention-output and MLP-output weights and biases are zero, so the block
        /// starts as the identity (exact for pre-LN GPT, not for post-LN BERT).
        case identity
        /// G_stack (Du et al. 2024): the whole stack repeated, layers 0..<L then 0..<L again, up to
        /// the target depth (a partial last repeat takes the first layers); the repeats are inserted.
        case stack
    }

    /// Which old unit a new residual dimension, head or FFN unit copies.
    public enum Source: String, Codable, Sendable, CaseIterable {
        /// Uniform over the old units, independently per new unit (the reference).
        case random
        /// New unit i copies unit i mod old size: with a k-fold width every unit is copied equally
        /// often, which keeps LayerNorm's statistics and makes growth exact.
        case roundRobin = "round-robin"
    }

    /// Where symmetry-breaking noise goes.
    public enum NoiseScope: String, Codable, Sendable, CaseIterable {
        /// Entries that belong to a new unit (a new row or column of a weight, a new element of a
        /// vector); the old units keep their values.
        case copies
        /// Every entry of every tensor.
        case all
    }

    /// What happens to Adam's moments.
    public enum Moments: String, Codable, Sendable, CaseIterable {
        /// Dropped; training restarts the optimizer (the reference).
        case reset
        /// Mapped with the same index maps and scaled as the gradients scale (second moment by the
        /// square); inserted identity layers start from zero, copied layers from their original.
        case carry
    }

    public var layers: Int
    public var width: Int
    public var heads: Int
    /// MLP width; nil keeps the source's ffn / width ratio.
    public var ffn: Int?
    public var depthMode: DepthMode = .copy
    public var source: Source = .random
    /// Standard deviation of the symmetry-breaking Gaussian noise (0: none, growth exact where the
    /// math allows).
    public var noise: Float = 0.01
    public var noiseScope: NoiseScope = .copies
    public var moments: Moments = .reset
    /// Seeds the layer choice, every index map and the noise.
    public var seed: UInt64 = 1
    /// Masked ramp (MSG; `GrowthRamp`): the new units enter through a mask going from 0 to 1 over
    /// this many updates, so the grown model is exactly the old function at the growth; old
    /// weights are then copied undivided. Nil: no ramp (the function-preserving division rules).
    public var ramp: Int?

    public init(layers: Int, width: Int, heads: Int, ffn: Int? = nil, depthMode: DepthMode = .copy,
                source: Source = .random, noise: Float = 0.01, noiseScope: NoiseScope = .copies,
                moments: Moments = .reset, seed: UInt64 = 1, ramp: Int? = nil) {
        self.layers = layers
        self.width = width
        self.heads = heads
        self.ffn = ffn
        self.depthMode = depthMode
        self.source = source
        self.noise = noise
        self.noiseScope = noiseScope
        self.moments = moments
        self.seed = seed
        self.ramp = ramp
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case layers, width, heads, ffn, depthMode, source, noise, noiseScope, moments, seed, ramp
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(layers: try c.decode(Int.self, forKey: .layers),
                  width: try c.decode(Int.self, forKey: .width),
                  heads: try c.decode(Int.self, forKey: .heads))
        ffn = try c.decodeIfPresent(Int.self, forKey: .ffn)
        depthMode = try c.decodeIfPresent(DepthMode.self, forKey: .depthMode) ?? depthMode
        source = try c.decodeIfPresent(Source.self, forKey: .source) ?? source
        noise = try c.decodeIfPresent(Float.self, forKey: .noise) ?? noise
        noiseScope = try c.decodeIfPresent(NoiseScope.self, forKey: .noiseScope) ?? noiseScope
        moments = try c.decodeIfPresent(Moments.self, forKey: .moments) ?? moments
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        ramp = try c.decodeIfPresent(Int.self, forKey: .ramp)
    }

    /// Checks what does not depend on the model; throws naming the first bad field.
    public func validate() throws {
        try GrowthPlanError.checkPositive(["layers": layers, "width": width, "heads": heads])
        if let ffn { try GrowthPlanError.checkPositive(["ffn": ffn]) }
        if let ramp { try GrowthPlanError.checkPositive(["ramp": ramp]) }
        try GrowthPlanError.check(noise >= 0 && noise.isFinite, "noise", "must be a finite standard deviation >= 0 (got \(noise))")
    }

    /// Checks the plan against the model it grows; throws naming the first bad field.
    public func validate(source c: ModelConfig) throws {
        try validate()
        let check = GrowthPlanError.check
        if let r = c.ramp {
            throw GrowthPlanError(field: "model", message: "is in a masked ramp (\(r.done) of \(r.length) updates done): grow once it is complete")
        }
        try check(layers >= c.layers, "layers", "cannot shrink: the model has \(c.layers) layers, the plan \(layers)")
        try check(width >= c.width, "width", "cannot shrink: the model is \(c.width) wide, the plan \(width)")
        try check(heads >= c.heads, "heads", "cannot shrink: the model has \(c.heads) heads, the plan \(heads)")
        try check(width % c.headDim == 0, "width",
                  "must be a multiple of the head dimension \(c.headDim), which growth keeps fixed (got \(width))")
        try check(heads * c.headDim == width, "heads",
                  "must be width / head dimension = \(width / c.headDim) (the head dimension \(c.headDim) is fixed under growth), got \(heads)")
        let f = targetFFN(source: c)
        try check(f >= c.ffn, "ffn", "cannot shrink: the model's MLP is \(c.ffn) wide, the plan \(f)")
    }

    func targetFFN(source c: ModelConfig) -> Int { ffn ?? c.ffn * width / c.width }

    /// The grown model's shape: the source's config with the new sizes. When the depth changes the
    /// lineage is left out here; `Growth.grow` fills it in.
    public func target(source c: ModelConfig) -> ModelConfig {
        var t = c
        if layers != c.layers { t.layerOrigins = nil }
        t.layers = layers
        t.width = width
        t.heads = heads
        t.ffn = targetFFN(source: c)
        return t
    }

    /// Whether the plan changes nothing.
    public func isIdentity(source c: ModelConfig) -> Bool {
        layers == c.layers && width == c.width && heads == c.heads && targetFFN(source: c) == c.ffn
    }
}

/// A growth plan that cannot apply to its model: "invalid growth plan: FIELD message".
public typealias GrowthPlanError = LocatedError<GrowthPlanErrorKind>
public enum GrowthPlanErrorKind: FieldErrorKind {
    public static func describe(_ field: String, _ message: String) -> String { "invalid growth plan: \(field) \(message)" }
}
