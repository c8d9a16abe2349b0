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
    @discardableResult
    func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, seq: Int,
                 dropoutSeed: UInt64?) -> Float
    /// Adds d(loss)/d(parameters) into `gradients`, where the loss's gradient with respect to
    /// the logits is written by `headGradient` (in place: it receives `logits`, rows
    /// `logitRowCount` x `config.vocab`, and leaves d(loss)/d(logits) there); nil means the
    /// forward pass's own mean cross-entropy (`backward()`). Knowledge inheritance mixes in a
    /// distillation term this way.
    func backward(headGradient: ((UnsafeMutablePointer<Float>) -> Void)?)
    /// Rows of `logits` in the last forward pass, and each row's target (negative: no loss).
    var logitRowCount: Int { get }
    var logitRowTargets: UnsafePointer<Int32> { get }
    /// Floats of activation memory `forward` allocates for a batch shape.
    func activationCount(batch: Int, seq: Int) -> Int
}

extension LanguageModel {
    public var parameterCount: Int { parameters.count }

    /// Adds d(mean loss of the last forward)/d(parameters) into `gradients`.
    public func backward() { backward(headGradient: nil) }

    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, seq: Int) -> Float {
        forward(tokens: tokens, targets: targets, batch: batch, seq: seq, dropoutSeed: nil)
    }
}

/// A model of `config.architecture` over existing parameters (zeros when nil).
public func makeModel(config: ModelConfig, parameters: FloatBuffer?) throws -> LanguageModel {
    switch config.architecture {
    case .gpt: return try GPT(config: config, parameters: parameters)
    case .bert: return try BERT(config: config, parameters: parameters)
    }
}

/// A freshly initialized model of `config.architecture`, deterministic from `seed`.
public func makeModel(config: ModelConfig, seed: UInt64) throws -> LanguageModel {
    switch config.architecture {
    case .gpt: return try GPT(config: config, seed: seed)
    case .bert: return try BERT(config: config, seed: seed)
    }
}
