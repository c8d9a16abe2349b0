import Foundation
import Model

/// elle's BERT as Hugging Face's `BertForMaskedLM`: the same post-LN encoder with exact (erf)
/// GELU and the same MLM head (dense, GELU, LayerNorm, decoder tied to the word embeddings, output
/// bias). `nn.Linear` keeps `[out, in]` like elle, so nothing is transposed; elle's fused
/// `attn.qkv` is the three entries `query`, `key`, `value` (row slices of it).
///
/// elle has no token types (segments). Export writes a `token_type_embeddings` of one zero row
/// (`type_vocab_size: 1`); import adds type 0's row to every position embedding (what BERT adds
/// when `token_type_ids` are all 0, as for single sentences) and drops the other types.
public struct BertArchitecture: HFArchitecture {
    public init() {}
    public var architecture: Architecture { .bert }
    public var maskedLM: Bool { true }
    public var modelType: String { "bert" }
    public var modelClass: String { "BertForMaskedLM" }
    public var basePrefix: String { "bert." }
    static let tokenTypes = "bert.embeddings.token_type_embeddings.weight"

    public func skipped(_ hfName: String) -> HFSkippedTensor? {
        switch hfName {
        case "cls.predictions.decoder.weight": return .tied(to: "bert.embeddings.word_embeddings.weight")
        case "cls.predictions.decoder.bias": return .tied(to: "cls.predictions.bias")
        case "embeddings.position_ids", "embeddings.token_type_ids": return .buffer
        case "embeddings.token_type_embeddings.weight": return .folded
        case "pooler.dense.weight", "pooler.dense.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias": return .otherHead
        default: return nil
        }
    }

    public func zeroTensors(for config: ModelConfig) -> [(hf: String, shape: [Int])] {
        [(BertArchitecture.tokenTypes, [1, config.width])]
    }

    public func foldUnmapped(into parameters: UnsafeMutablePointer<Float>, config: ModelConfig,
                             read: (String) throws -> (shape: [Int], values: [Float], file: String)?) throws -> [String] {
        guard let (shape, values, file) = try read(BertArchitecture.tokenTypes) else { return [] }
        let d = config.width
        guard shape.count == 2, shape[0] >= 1, shape[1] == d else {
            throw InteropError(path: file, "tensor \(BertArchitecture.tokenTypes) has shape \(shape); config.json's model needs [type_vocab_size, \(d)]")
        }
        var notes: [String] = []
        if values[0..<d].contains(where: { $0 != 0 }) {
            let wpe = parameters + BERTLayout(config: config).positionEmbedding
            for p in 0..<config.context {
                for j in 0..<d { wpe[p * d + j] += values[j] }
            }
            notes.append("token type 0's embedding is added to every position embedding (elle's BERT has no token types)")
        }
        if shape[0] > 1 {
            notes.append("token types 1..<\(shape[0]) are dropped: the model runs as Hugging Face's does with token_type_ids all 0")
        }
        return notes
    }

    public func configJSON(for c: ModelConfig, ids: HFSpecialIds) -> [String: Any] {
        var json: [String: Any] = [
            "architectures": [modelClass], "model_type": modelType,
            "vocab_size": c.vocab, "max_position_embeddings": c.context, "type_vocab_size": 1,
            "hidden_size": c.width, "num_hidden_layers": c.layers, "num_attention_heads": c.heads, "intermediate_size": c.ffn,
            "hidden_act": "gelu", "position_embedding_type": "absolute",
            "hidden_dropout_prob": jsonNumber(c.dropout), "attention_probs_dropout_prob": jsonNumber(c.dropout),
            "layer_norm_eps": jsonNumber(c.layerNormEpsilon), "initializer_range": 0.02,
            "is_decoder": false, "add_cross_attention": false, "tie_word_embeddings": true, "dtype": "float32",
            "eos_token_id": ids.endOfText,
        ]
        if let pad = c.padToken.map(Int.init) ?? ids.pad { json["pad_token_id"] = pad }
        if let begin = ids.begin { json["bos_token_id"] = begin }
        return json
    }

    public func modelConfig(fromConfigJSON json: [String: Any], path: String) throws -> ModelConfig {
        let field = ConfigFields(json: json, path: path)
        let activation = try field.string("hidden_act", default: "gelu")
        // transformers' "gelu" and "gelu_python" are both the exact erf GELU elle's BERT uses.
        guard activation == "gelu" || activation == "gelu_python" else {
            throw InteropError(path: path, "hidden_act \(activation) is not elle's BERT GELU (the exact erf GELU, gelu)")
        }
        let positions = try field.string("position_embedding_type", default: "absolute")
        guard positions == "absolute" else {
            throw InteropError(path: path, "position_embedding_type \(positions) is not absolute (elle's BERT learns one embedding per position)")
        }
        try field.require("is_decoder", equals: false, default: false, why: "elle's BERT attends in both directions")
        try field.require("add_cross_attention", equals: false, default: false, why: "elle's BERT has no cross-attention")
        try field.require("tie_word_embeddings", equals: true, default: true, why: "elle's BERT ties its MLM decoder to the word embeddings")
        let config = ModelConfig(
            architecture: .bert, layers: try field.int("num_hidden_layers"), width: try field.int("hidden_size"),
            heads: try field.int("num_attention_heads"), vocab: try field.int("vocab_size"),
            context: try field.optionalInt("max_position_embeddings") ?? 512,
            ffn: try field.optionalInt("intermediate_size") ?? 3072,
            dropout: Float(try field.double("hidden_dropout_prob", default: 0.1)),
            layerNormEpsilon: Float(try field.double("layer_norm_eps", default: 1e-12)))
        return try config.checked(json: json, path: path)
    }
}
