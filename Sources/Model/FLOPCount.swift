/// FLOPs as elle counts them everywhere (the trainer, lifelong runs and their equal-FLOPs plans,
/// knowledge inheritance's teacher passes, `elle bench`): per token, a forward pass costs
/// 2 N + 4 L D T and a training step (forward and backward) three times that, 6 N + 12 L D T, for
/// N parameters, L layers, width D and sequence length T (as ../shared/anchors/torch_gpt_bench.py).
///
/// BERT's masked-LM head (dense, GELU, norm, the projection tied to the token embedding, the
/// output bias) runs only at the predicted positions, `bertPredictedShare` of the tokens, so its
/// parameters count at that share; without it a small BERT, whose head is most of its
/// parameters, would be charged twice the work it does. The token embedding's lookup is free in
/// both models; its parameters are counted as the tied output projection they also are.
public enum FLOPCount {
    /// The share of positions a BERT predicts (`MaskedLM.maskProbability`'s default).
    public static let bertPredictedShare = 0.15

    public static func forwardPerToken(_ config: ModelConfig, parameters: Int, seq: Int) -> Double {
        var counted = Double(parameters)
        if config.architecture == .bert {
            let d = config.width, v = config.vocab
            let head = Double(d * d + d + 2 * d + v * d + v)
            counted -= (1 - bertPredictedShare) * head
        }
        return 2 * counted + 4 * Double(config.layers * config.width * seq)
    }

    public static func trainingPerToken(_ config: ModelConfig, parameters: Int, seq: Int) -> Double {
        3 * forwardPerToken(config, parameters: parameters, seq: seq)
    }
}
