import Tensors

extension Architecture {
    /// The model class of each architecture: the one place in `Model` that picks by
    /// architecture. Its layout (`ModelConfig.layout`) gives the parameter tensors, their
    /// initialization, growth roles and Hugging Face names.
    public var modelType: any ArchitectureModel.Type {
        switch self {
        case .gpt: return GPT.self
        case .bert: return BERT.self
        }
    }
}

/// A language model one `Architecture` names (`GPT`, `BERT`): built over a config's layout.
public protocol ArchitectureModel: LanguageModel {
    /// The layout of `config`'s parameters for this class.
    static func layout(for config: ModelConfig) -> any ModelLayout
    /// A model over existing parameters (e.g. from a checkpoint), or zeros when nil.
    init(config: ModelConfig, parameters: FloatBuffer?) throws
    /// A model with freshly initialized parameters, deterministic from `seed`.
    init(config: ModelConfig, seed: UInt64) throws
}

/// Where one forward pass's activations live for a batch shape (`GPTActivations`,
/// `BERTActivations`): offsets into one buffer of `count` floats. Public only because GPT and
/// BERT name their carving in their superclass; the other offsets stay internal.
public protocol ActivationCarving {
    init(config: ModelConfig, batch: Int, seq: Int, threads: Int, precision: Precision)
    var batch: Int { get }
    var seq: Int { get }
    var threads: Int { get }
    /// Under bf16 the activations only products read are carved as bf16 (`OperandSlot`).
    var precision: Precision { get }
    var count: Int { get }
    /// The logits, overwritten by their gradient in backward.
    var logits: Int { get }
    /// Branch scratch, where dropout writes a dropped-out gradient.
    var branch: Int { get }
}

extension GPTActivations: ActivationCarving {}
extension BERTActivations: ActivationCarving {}

/// What GPT and BERT share around their forward and backward passes: the config, its layout,
/// the flat parameter and gradient buffers, initialization, and the activation buffer carved
/// for the current batch shape. A subclass adds its passes and the per-position buffers they use.
public class TransformerModel<Layout: ModelLayout, Activations: ActivationCarving> {
    /// Changes only as a masked ramp advances (`advanceRamp`); the layout does not depend on it.
    public final private(set) var config: ModelConfig
    public final let layout: Layout
    /// The parameters. While some are still arriving (`arrivals`), reading them waits for all.
    public final var parameters: FloatBuffer {
        settleArrivals()
        return storage
    }
    public final var parameterCount: Int { storage.count }
    public final let gradients: FloatBuffer
    /// The parameter buffer itself: the passes read it part by part (`arrive(through:)`).
    final let storage: FloatBuffer

    /// Parameters still on their way (ZeRO-1's all-gather of the updated shards), consumed by
    /// the next forward pass as it goes; nil once all are in place.
    public final var arrivals: ParameterArrivals? {
        didSet { arrivedThrough = 0 }
    }
    /// Parameters below this offset have arrived (and are converted for bf16 products).
    private var arrivedThrough = 0

    /// The masks of a masked ramp for the current pass (nil without a ramp): set by `beginPass`.
    final var ramp: RampMasks?

    /// The carving of `actBuffer` for the current batch shape (nil before the first pass).
    final var acts: Activations?
    final var actBuffer = FloatBuffer(count: 0)
    /// The token ids of the last pass, (B, T).
    final var tokens = Buffer<Int32>(count: 0)
    /// What keys the last pass's dropout masks (nil: no dropout).
    final var lastDropoutSeed: UInt64?
    /// The batch shape of the last pass, and whether it had targets (what backward needs).
    final var lastBatch = 0, lastSeq = 0
    final var lastHadTargets = false

    /// The operands of matrix products: float32, or bf16 with the weights read from `weightCopy`
    /// (mixed precision; docs/ARCHITECTURE.md, "bf16").
    public final var precision: Precision = .fp32 {
        didSet { weightCopy = BF16Copy.matching(precision, weightCopy, count: storage.count) }
    }
    /// Under bf16, the weights as the products read them.
    public final private(set) var weightCopy: BF16Copy?

    /// The weights as this pass's products read them; a forward pass first converts a stale copy
    /// (part by part in `arrive(through:)` while parameters are arriving).
    final func weights(refreshing: Bool) -> WeightOperands {
        if refreshing && arrivals == nil { weightCopy?.refresh(from: storage) }
        return WeightOperands(parameters: storage.pointer, copy: weightCopy?.pointer)
    }

    /// Before a forward pass reads the parameters below `end` (it goes through the buffer in
    /// order): waits for them to arrive and converts them for bf16 products when the copy is
    /// stale. Nothing to do when no parameters are arriving.
    final func arrive(through end: Int) {
        guard let arrivals, end > arrivedThrough else { return }
        arrivals.waitFor(through: end)
        if let copy = weightCopy, !copy.isCurrent { copy.convert(from: storage, arrivedThrough..<end) }
        arrivedThrough = end
        if end >= storage.count {
            weightCopy?.isCurrent = true
            self.arrivals = nil
        }
    }

    /// Waits for every parameter still arriving.
    final func settleArrivals() { arrive(through: storage.count) }

    public static func layout(for config: ModelConfig) -> any ModelLayout { Layout(config: config) }

    /// A model over existing parameters (e.g. from a checkpoint), or zeros when nil.
    public required init(config: ModelConfig, parameters: FloatBuffer?) throws {
        try config.validate()
        guard config.architecture == Layout.architecture else {
            throw ConfigError(field: "architecture",
                              message: "is \(config.architecture), but this is the \(Layout.architecture.rawValue.uppercased()) model")
        }
        self.config = config
        layout = Layout(config: config)
        if let parameters {
            guard parameters.count == layout.parameterCount else {
                throw ConfigError(field: "parameters",
                    message: "has \(parameters.count) values but \(config) needs \(layout.parameterCount)")
            }
            storage = parameters
        } else {
            storage = FloatBuffer(count: layout.parameterCount)
        }
        gradients = FloatBuffer(count: layout.parameterCount)
    }

    /// A model with freshly initialized parameters (the layout's scheme, deterministic from `seed`).
    public convenience init(config: ModelConfig, seed: UInt64) throws {
        try self.init(config: config, parameters: nil)
        initializeParameters(seed: seed)
    }

    /// Sets every parameter as a fresh model starts (`ModelLayout.initialize`): GPT-2's scheme
    /// for GPT (residual output projections at 0.02 / sqrt(2 L)), BERT's for BERT.
    public final func initializeParameters(seed: UInt64) { layout.initialize(storage.pointer, seed: seed) }

    public final var tensors: [TensorSpec] { layout.tensors }

    public final func zeroGradients() { gradients.zero() }

    /// One update further into the masked ramp (`GrowthRamp.advanced`); the plain model once it completes.
    public final func advanceRamp() {
        if let r = config.ramp { config.ramp = r.advanced() }
    }

    /// The gradient reaching block l's residual branch: `gradient` itself, or for a block a ramp
    /// inserted, m times it in the branch scratch (where dropout may already have put it).
    final func rampedBranchGradient(_ gradient: UnsafeMutablePointer<Float>, count: Int, layer l: Int) -> UnsafeMutablePointer<Float> {
        guard let m = ramp?.branchScale(layer: l), let acts else { return gradient }
        let out = actBuffer.pointer + acts.branch
        if out != gradient { out.update(from: gradient, count: count) }
        scaleInPlace(out, m, count: count)
        return out
    }

    /// Block l's residual branch (in the branch scratch) times m when a ramp inserted the block.
    final func rampBranch(_ branch: UnsafeMutablePointer<Float>, count: Int, layer l: Int) {
        if let m = ramp?.branchScale(layer: l) { scaleInPlace(branch, m, count: count) }
    }

    /// Logits of the last forward pass, one row of V per predicted position (overwritten by `backward`).
    public final var logits: UnsafeMutablePointer<Float> {
        guard let acts else { preconditionFailure("logits read before any forward pass") }
        return actBuffer.pointer + acts.logits
    }

    /// Floats of activation memory for a batch shape (what `forward` allocates).
    public final func activationCount(batch: Int, seq: Int) -> Int {
        Activations(config: config, batch: batch, seq: seq, threads: Parallel.threads, precision: precision).count
    }

    /// Allocates activations for (b, t) if the current ones are too small or a different shape.
    /// Starts a pass over B sequences of T tokens: checks T against the context, carves the
    /// activations for the shape and records what backward and dropout need; returns the carving.
    final func beginPass(batch b: Int, seq t: Int, hasTargets: Bool, dropoutSeed: UInt64?) -> Activations {
        precondition(t >= 1 && t <= config.context, "sequence length \(t) outside 1...\(config.context)")
        prepare(batch: b, seq: t)
        lastBatch = b; lastSeq = t; lastHadTargets = hasTargets
        lastDropoutSeed = config.dropout > 0 ? dropoutSeed : nil
        ramp = RampMasks(config)
        return acts!
    }

    final func prepare(batch b: Int, seq t: Int) {
        if let acts, acts.batch == b, acts.seq == t, acts.threads >= Parallel.threads, acts.precision == precision { return }
        let fresh = Activations(config: config, batch: b, seq: t, threads: Parallel.threads, precision: precision)
        actBuffer = FloatBuffer(count: fresh.count)
        tokens = Buffer<Int32>(count: b * t)
        allocatePositionBuffers(b * t)
        acts = fresh
    }

    /// Sizes the subclass's own per-position buffers when `prepare` allocates for `positions` (B T).
    func allocatePositionBuffers(_ positions: Int) {}

    /// This pass's dropout sites (0: the embedding output; 1 + 3l: attention probabilities of
    /// block l; 2 + 3l and 3 + 3l: its two residual branches); dropped gradients go to the branch
    /// scratch.
    final var dropouts: DropoutSites {
        DropoutSites(seed: lastDropoutSeed, probability: config.dropout, scratch: actBuffer.pointer + (acts?.branch ?? 0))
    }
}
