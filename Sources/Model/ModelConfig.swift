import Tensors

/// The model family.
public enum Architecture: String, Codable, Sendable, CaseIterable {
    /// Causal LM, pre-LN blocks, tied output embedding (`GPT`).
    case gpt
    /// Masked LM, post-LN encoder with a padding mask, MLM head on the masked positions (`BERT`).
    case bert
}

/// What the model's norms compute.
public enum Normalization: String, Codable, Sendable, CaseIterable {
    /// LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias (the model as trained).
    case layerNorm = "layer-norm"
    /// A diagnostic: every norm becomes the affine map weight * x + bias (no statistics). Width
    /// growth is then exactly function-preserving for any index map, which the growth tests use
    /// to separate the growth rules from LayerNorm's sensitivity to copy counts. Not for training.
    case affine
}

/// Everything that fixes a model's shapes and numerics. A small printable value saved inside
/// every checkpoint; growth produces a new one.
public struct ModelConfig: Codable, Equatable, Sendable, CustomStringConvertible {
    public var architecture: Architecture
    /// Transformer blocks.
    public var layers: Int
    /// Residual stream width D.
    public var width: Int
    /// Attention heads of `headDim` dimensions each; `heads * headDim` must equal `width`
    /// (as in GPT-2; growth adds whole heads of the same dimension).
    public var heads: Int
    public var headDim: Int
    /// Hidden width of the MLP (4 * width by default).
    public var ffn: Int
    /// Vocabulary size V (token ids 0..<V, including special and domain-prompt tokens).
    public var vocab: Int
    /// Maximum sequence length (rows of the position embedding).
    public var context: Int
    /// Dropout probability on the embedding sum, attention probabilities and both residual branches.
    public var dropout: Float
    public var layerNormEpsilon: Float
    /// Stored only when not LayerNorm, so ordinary checkpoints do not mention it.
    private var normalizationIfSpecial: Normalization?
    public var normalization: Normalization {
        get { normalizationIfSpecial ?? .layerNorm }
        set { normalizationIfSpecial = newValue == .layerNorm ? nil : newValue }
    }
    /// Depth-growth lineage: for each block, the block of the first (never depth-grown) model it
    /// descends from; nil until the model is first grown in depth (block l is then its own
    /// origin). Depth growth reads it to copy every original once before any twice.
    public var layerOrigins: [Int]?
    /// The padding token (BERT): attention ignores keys at positions holding it. Nil: no padding
    /// mask (GPT; stored only when set).
    public var padToken: Int32?
    /// A masked ramp in progress after a growth (`GrowthRamp`): nil for a plain model (stored only
    /// when set).
    public var ramp: GrowthRamp?

    enum CodingKeys: String, CodingKey {
        case architecture, layers, width, heads, headDim, ffn, vocab, context, dropout, layerNormEpsilon
        case normalizationIfSpecial = "normalization"
        case layerOrigins, padToken, ramp
    }

    public init(
        architecture: Architecture = .gpt, layers: Int, width: Int, heads: Int, vocab: Int,
        context: Int, headDim: Int? = nil, ffn: Int? = nil, dropout: Float = 0.1,
        layerNormEpsilon: Float = 1e-5
    ) {
        self.architecture = architecture
        self.layers = layers
        self.width = width
        self.heads = heads
        self.headDim = headDim ?? (heads > 0 ? width / heads : 0)
        self.ffn = ffn ?? 4 * width
        self.vocab = vocab
        self.context = context
        self.dropout = dropout
        self.layerNormEpsilon = layerNormEpsilon
    }

    public var attentionWidth: Int { heads * headDim }

    /// Where this config's parameters live and what each tensor is (`GPTLayout`, `BERTLayout`).
    public var layout: any ModelLayout { architecture.modelType.layout(for: self) }

    /// Every parameter tensor of this architecture, in layout order.
    public var parameterTensors: [TensorSpec] { layout.tensors }

    /// Number of trainable parameters (embeddings included).
    public var parameterCount: Int { layout.parameterCount }

    /// Throws a message naming the first invalid field.
    public func validate() throws {
        let check = ConfigError.check
        try ConfigError.checkPositive(["layers": layers, "width": width, "heads": heads])
        try check(heads * headDim == width, "heads",
                  "must divide width: \(heads) heads x \(headDim) dims != width \(width)")
        try ConfigError.checkPositive(["ffn": ffn])
        try check(vocab >= 2, "vocab", "must be at least 2 (got \(vocab))")
        try ConfigError.checkPositive(["context": context])
        try check(dropout >= 0 && dropout < 1, "dropout", "must be in [0, 1) (got \(dropout))")
        try check(layerNormEpsilon > 0, "layerNormEpsilon", "must be positive")
        if let layerOrigins {
            try check(layerOrigins.count == layers, "layerOrigins",
                      "must list one origin per layer (\(layerOrigins.count) for \(layers) layers)")
            try check(layerOrigins.allSatisfy { $0 >= 0 }, "layerOrigins", "must not be negative")
        }
        if let padToken {
            try check(padToken >= 0 && Int(padToken) < vocab, "padToken", "must be a token id in 0..<\(vocab) (got \(padToken))")
        }
        try ramp?.validate(self)
    }

    public var description: String {
        "\(architecture) L\(layers) D\(width) H\(heads)x\(headDim) F\(ffn) V\(vocab) T\(context) dropout \(dropout)"
            + (normalization == .layerNorm ? "" : " norms \(normalization.rawValue)")
            + (ramp.map { " ramp \($0.done)/\($0.length)" } ?? "")
    }
}

/// A bad field of a model config (or of training options): "invalid model config: FIELD message".
public typealias ConfigError = LocatedError<ConfigErrorKind>
public enum ConfigErrorKind: FieldErrorKind {
    public static func describe(_ field: String, _ message: String) -> String { "invalid model config: \(field) \(message)" }
}
