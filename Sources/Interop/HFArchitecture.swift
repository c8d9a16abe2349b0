import Foundation
import Model
import Tensors

/// Why an import may pass over a state-dict entry that no elle tensor maps to.
public enum HFSkippedTensor: Equatable {
    /// A buffer, not a parameter (e.g. GPT-2's causal mask `attn.bias`).
    case buffer
    /// An output layer tied to this entry of the table (it must hold the same values).
    case tied(to: String)
    /// Read by the architecture's `foldUnmapped` (BERT's token-type embedding).
    case folded
    /// A head of another task that the model class does not use either (BERT's pooler and
    /// next-sentence head, which `BertForMaskedLM.from_pretrained` drops too).
    case otherHead
}

/// The ids a Hugging Face config names (begin/end of text, padding).
public struct HFSpecialIds: Equatable, Sendable {
    public var endOfText: Int
    public var pad: Int?
    /// `<|bos|>` and `<|mask|>` (BPE tokenizers; BERT's config names them).
    public var begin: Int?
    public var mask: Int?
    public init(endOfText: Int, pad: Int?, begin: Int? = nil, mask: Int? = nil) {
        self.endOfText = endOfText
        self.pad = pad
        self.begin = begin
        self.mask = mask
    }
}

/// How one elle architecture corresponds to a Hugging Face model class: which entries to skip,
/// and `config.json` both ways. The tensor names themselves are declared with the tensors, in the
/// architecture's layout (`ModelLayout.huggingFaceNames`). One conforming type per architecture;
/// `HFArchitectures` picks it. GPT is `GPT2LMHeadModel`; BERT is `BertForMaskedLM`.
public protocol HFArchitecture {
    /// The elle architecture it maps.
    var architecture: Architecture { get }
    /// A masked LM (BERT): its tokenizer needs <|mask|> and <|pad|> (so no byte tokenizer), and
    /// its attention ignores the pad token's keys.
    var maskedLM: Bool { get }
    /// `config.json`'s `model_type`, and the class its `architectures` names.
    var modelType: String { get }
    var modelClass: String { get }
    /// Prefix of the base model's entries inside the class ("transformer." for GPT-2). Files
    /// saved from the base model alone (such as openai-community/gpt2's) lack it; import accepts both.
    var basePrefix: String { get }
    /// Whether an import may pass over an entry the table does not name (with the prefix removed).
    func skipped(_ hfName: String) -> HFSkippedTensor?
    /// `config.json` for a model of this config.
    func configJSON(for config: ModelConfig, ids: HFSpecialIds) -> [String: Any]
    /// The elle config of a `config.json` (its vocabulary as the file says); throws naming the
    /// field that elle cannot represent.
    func modelConfig(fromConfigJSON json: [String: Any], path: String) throws -> ModelConfig
    /// Entries the class needs that elle has no tensor for, written as zeros on export (BERT's
    /// token-type embedding: one type whose zero row adds nothing).
    func zeroTensors(for config: ModelConfig) -> [(hf: String, shape: [Int])]
    /// On import, after the table's tensors are in `parameters` (laid out for `config`): folds in
    /// the entries `skipped` calls `.folded`, read through `read` (nil when absent). Returns notes
    /// for the user about what changed.
    func foldUnmapped(into parameters: UnsafeMutablePointer<Float>, config: ModelConfig,
                      read: (String) throws -> (shape: [Int], values: [Float], file: String)?) throws -> [String]
}

extension HFArchitecture {
    public var maskedLM: Bool { false }

    /// Every elle tensor, in layout order, with its Hugging Face entries.
    public func tensorNames(for config: ModelConfig) -> [HFTensorName] { config.layout.huggingFaceNames }

    public func zeroTensors(for config: ModelConfig) -> [(hf: String, shape: [Int])] { [] }
    public func foldUnmapped(into parameters: UnsafeMutablePointer<Float>, config: ModelConfig,
                             read: (String) throws -> (shape: [Int], values: [Float], file: String)?) throws -> [String] { [] }
}

public enum HFArchitectures {
    /// Every mapping elle knows, for import by `model_type`.
    public static let all: [HFArchitecture] = [GPT2Architecture(), BertArchitecture()]

    /// The mapping for an elle architecture.
    public static func forElle(_ architecture: Architecture) -> HFArchitecture {
        all.first { $0.architecture == architecture }!
    }

    public static func forModelType(_ type: String) -> HFArchitecture? { all.first { $0.modelType == type } }
}

/// A Hugging Face folder or file elle cannot read or write: "PATH: message".
public typealias InteropError = LocatedError<InteropErrorKind>
public enum InteropErrorKind: FileErrorKind {
    public static func describe(_ path: String, _ message: String) -> String { "\(path): \(message)" }
}

/// elle's GPT as Hugging Face's `GPT2LMHeadModel`: the same pre-LN blocks with `gelu_new`, the
/// output layer tied to `wte` (so `lm_head.weight` is not stored), the four matrices of each block
/// in `Conv1D` layout (`[in, out]`, transposed from elle's `[out, in]`).
public struct GPT2Architecture: HFArchitecture {
    public init() {}
    public var architecture: Architecture { .gpt }
    public var modelType: String { "gpt2" }
    public var modelClass: String { "GPT2LMHeadModel" }
    public var basePrefix: String { "transformer." }

    public func skipped(_ hfName: String) -> HFSkippedTensor? {
        if hfName == "lm_head.weight" { return .tied(to: basePrefix + "wte.weight") }
        // The causal mask and the masked-score constant older transformers saved per block.
        if hfName.hasPrefix("h."), hfName.hasSuffix(".attn.bias") || hfName.hasSuffix(".attn.masked_bias") { return .buffer }
        return nil
    }

    public func configJSON(for c: ModelConfig, ids: HFSpecialIds) -> [String: Any] {
        var json: [String: Any] = [
            "architectures": [modelClass], "model_type": modelType,
            "vocab_size": c.vocab, "n_positions": c.context, "n_ctx": c.context,
            "n_embd": c.width, "n_layer": c.layers, "n_head": c.heads, "n_inner": c.ffn,
            "activation_function": "gelu_new",
            "resid_pdrop": jsonNumber(c.dropout), "embd_pdrop": jsonNumber(c.dropout), "attn_pdrop": jsonNumber(c.dropout),
            "layer_norm_epsilon": jsonNumber(c.layerNormEpsilon), "initializer_range": 0.02,
            "scale_attn_weights": true, "scale_attn_by_inverse_layer_idx": false, "reorder_and_upcast_attn": false,
            "tie_word_embeddings": true, "use_cache": true, "dtype": "float32",
            "bos_token_id": ids.endOfText, "eos_token_id": ids.endOfText,
        ]
        if let pad = ids.pad { json["pad_token_id"] = pad }
        return json
    }

    public func modelConfig(fromConfigJSON json: [String: Any], path: String) throws -> ModelConfig {
        let field = ConfigFields(json: json, path: path)
        let width = try field.int("n_embd")
        let activation = try field.string("activation_function", default: "gelu_new")
        // gelu_pytorch_tanh is the same tanh approximation as gelu_new.
        guard activation == "gelu_new" || activation == "gelu_pytorch_tanh" else {
            throw InteropError(path: path, "activation_function \(activation) is not elle's GELU (the tanh approximation, gelu_new)")
        }
        try field.require("scale_attn_weights", equals: true, default: true, why: "elle scales attention scores by 1/sqrt(head dim)")
        try field.require("scale_attn_by_inverse_layer_idx", equals: false, default: false, why: "elle does not scale attention by layer")
        try field.require("add_cross_attention", equals: false, default: false, why: "elle's GPT has no cross-attention")
        try field.require("tie_word_embeddings", equals: true, default: true, why: "elle's GPT ties its output layer to the token embedding")
        let config = ModelConfig(
            architecture: .gpt, layers: try field.int("n_layer"), width: width, heads: try field.int("n_head"),
            vocab: try field.int("vocab_size"), context: try field.int("n_positions", fallback: "n_ctx"),
            ffn: try field.optionalInt("n_inner") ?? 4 * width,
            dropout: Float(try field.double("resid_pdrop", default: 0.1)),
            layerNormEpsilon: Float(try field.double("layer_norm_epsilon", default: 1e-5)))
        return try config.checked(json: json, path: path)
    }
}

extension ModelConfig {
    /// The config read from a `config.json`, with the layer lineage elle wrote into its `elle`
    /// entry, if any; throws naming the file when elle cannot build it.
    func checked(json: [String: Any], path: String) throws -> ModelConfig {
        var config = self
        if let elle = json["elle"] as? [String: Any], let origins = elle["layer_origins"] as? [Int], origins.count == layers {
            config.layerOrigins = origins
        }
        do {
            try config.validate()
        } catch let error as ConfigError {
            throw InteropError(path: path, "describes a model elle cannot build: \(error.description)")
        }
        return config
    }
}

/// A float as the JSON number that reads back as the same float (0.1, not 0.10000000149011612).
func jsonNumber(_ value: Float) -> Double { Double("\(value)")! }

/// Typed reads of config.json fields, each failure naming the file and the field.
struct ConfigFields {
    let json: [String: Any]
    let path: String

    func int(_ key: String, fallback: String? = nil) throws -> Int {
        if let value = try optionalInt(key) { return value }
        if let fallback, let value = try optionalInt(fallback) { return value }
        throw InteropError(path: path, "has no integer field \(key)")
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let value = json[key], !(value is NSNull) else { return nil }
        guard let number = value as? Int else { throw InteropError(path: path, "field \(key) is not an integer (\(value))") }
        return number
    }

    func double(_ key: String, default fallback: Double) throws -> Double {
        guard let value = json[key], !(value is NSNull) else { return fallback }
        guard let number = value as? Double else { throw InteropError(path: path, "field \(key) is not a number (\(value))") }
        return number
    }

    func string(_ key: String, default fallback: String) throws -> String {
        guard let value = json[key], !(value is NSNull) else { return fallback }
        guard let text = value as? String else { throw InteropError(path: path, "field \(key) is not a string (\(value))") }
        return text
    }

    func require(_ key: String, equals expected: Bool, default fallback: Bool, why: String) throws {
        var actual = fallback
        if let value = json[key], !(value is NSNull) {
            guard let flag = value as? Bool else { throw InteropError(path: path, "field \(key) is not true or false (\(value))") }
            actual = flag
        }
        guard actual == expected else { throw InteropError(path: path, "has \(key) = \(actual); elle needs \(expected) (\(why))") }
    }
}
