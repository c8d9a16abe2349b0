import Tensors

/// What training, growth and evaluation need from a model, whatever its architecture: flat
/// parameter and gradient buffers with a named layout, and a forward pass with a loss followed
/// by a backward pass that adds into `gradients`.
///
/// `forward` takes B sequences of T token ids (row-major) and, for a loss, targets of the same
/// shape where a negative target means "no loss here" (padding; for a masked LM every position
/// that was not masked). It returns the mean loss over counted positions and keeps what
/// `backward` needs.
public protocol LanguageModel: AnyObject {
    var config: ModelConfig { get }
    var parameters: FloatBuffer { get }
    var parameterCount: Int { get }
    /// Parameters still on their way when the next forward pass starts (ZeRO-1's all-gather):
    /// the pass waits for each part just before it reads it; any other read of `parameters`
    /// waits for all of them first.
    var arrivals: ParameterArrivals? { get set }
    var gradients: FloatBuffer { get }
    /// Every parameter tensor: name, shape, offset in `parameters`, whether AdamW decays it.
    var tensors: [TensorSpec] { get }
    /// The mean loss of the last forward pass with targets, in Float64.
    var lastLoss: Double { get }
    /// Logits of the last forward pass, one row of `config.vocab` per predicted position: every
    /// position for GPT; for BERT the positions with a target >= 0, or every position without
    /// targets (`BERT.predictedPositions`).
    var logits: UnsafeMutablePointer<Float> { get }

    func zeroGradients()
    /// One update further into a masked ramp (`ModelConfig.ramp`); nothing without one.
    func advanceRamp()
    @discardableResult
    func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, seq: Int,
                 dropoutSeed: UInt64?) -> Float
    /// Adds d(loss)/d(parameters) into `gradients`, where the loss's gradient with respect to
    /// the logits is written by `headGradient` (in place: it receives `logits`, rows
    /// `logitRowCount` x `config.vocab`, and leaves d(loss)/d(logits) there); nil means the
    /// forward pass's own mean cross-entropy (`backward()`). Knowledge inheritance mixes in a
    /// distillation term this way. `observer` is told as parts of `gradients` become final
    /// (data-parallel overlap, docs/SCALING.md); a model without finer reports tells it nothing,
    /// and its gradient is then final when `backward` returns.
    func backward(headGradient: ((UnsafeMutablePointer<Float>) -> Void)?, observer: GradientObserver?)
    /// Rows of `logits` in the last forward pass, and each row's target (negative: no loss).
    var logitRowCount: Int { get }
    var logitRowTargets: UnsafePointer<Int32> { get }
    /// Floats of activation memory `forward` allocates for a batch shape.
    func activationCount(batch: Int, seq: Int) -> Int
    /// The operands of matrix products: float32, or bf16 with float32 accumulation (mixed
    /// precision: parameters, gradients and everything but the products' operands stay float32).
    var precision: Precision { get set }
    /// Under bf16, the bf16 copy of `parameters` the products read: converted by the first forward
    /// pass after it was marked stale (`parametersChanged`), or written by `AdamW.update` itself.
    var weightCopy: BF16Copy? { get }
}

extension LanguageModel {
    /// Tells the model that `parameters` were changed by something other than `AdamW.update`
    /// (a broadcast, a load, a test), so the bf16 weight copy is converted again before use.
    public func parametersChanged() { weightCopy?.isCurrent = false }

    /// Adds d(mean loss of the last forward)/d(parameters) into `gradients`.
    public func backward() { backward(headGradient: nil, observer: nil) }

    public func backward(headGradient: ((UnsafeMutablePointer<Float>) -> Void)?) {
        backward(headGradient: headGradient, observer: nil)
    }

    public func backward(observer: GradientObserver?) { backward(headGradient: nil, observer: observer) }

    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, seq: Int) -> Float {
        forward(tokens: tokens, targets: targets, batch: batch, seq: seq, dropoutSeed: nil)
    }
}

/// Parameters that arrive while a forward pass runs (`LanguageModel.arrivals`).
public protocol ParameterArrivals: AnyObject {
    /// Returns once every parameter below offset `end` is in place. A failure (a peer gone) is
    /// kept for the owner to report; the wait then returns.
    func waitFor(through end: Int)
}

/// A model of `config.architecture` over existing parameters (zeros when nil).
public func makeModel(config: ModelConfig, parameters: FloatBuffer?) throws -> LanguageModel {
    try config.architecture.modelType.init(config: config, parameters: parameters)
}

/// A freshly initialized model of `config.architecture`, deterministic from `seed`.
public func makeModel(config: ModelConfig, seed: UInt64) throws -> LanguageModel {
    try config.architecture.modelType.init(config: config, seed: seed)
}

/// Told by `backward(observer:)` as parts of the gradient become final, so a data-parallel trainer
/// can sum them across ranks while the rest of backward runs (docs/SCALING.md).
public protocol GradientObserver: AnyObject {
    /// `gradients[range]` will not be written again in this backward pass. A pass reports disjoint
    /// ranges; whatever it does not report is final when it returns.
    func gradientsFinal(_ range: Range<Int>)

    /// Asked at the start of backward by a model whose token embedding (`rows` x `width` floats at
    /// `offset` in `gradients`) is also its output projection. The lookup's gradient arrives only
    /// at the very end of backward; by returning a destination the observer takes it (the model
    /// adds the gradient of position i into row `rows[i]` of `gradient` instead of `gradients`),
    /// so the embedding's range is final as soon as the output projection's backward is done.
    /// `tokens` are the `count` input token ids. Return nil to leave it in `gradients`.
    func takeTokenEmbeddingGradient(tokens: UnsafePointer<Int32>, count: Int, rows: Int, width: Int,
                                    offset: Int) -> TokenEmbeddingGradient?
}

/// Where a model adds its token-embedding lookup's gradient when an observer takes it.
public struct TokenEmbeddingGradient {
    /// Rows of `width` floats, zeroed by the observer.
    public var gradient: UnsafeMutablePointer<Float>
    /// Per input position, the row of `gradient` it adds into.
    public var rows: UnsafePointer<Int32>

    public init(gradient: UnsafeMutablePointer<Float>, rows: UnsafePointer<Int32>) {
        self.gradient = gradient
        self.rows = rows
    }
}
