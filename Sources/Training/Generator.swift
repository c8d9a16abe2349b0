import Corpus
import Foundation
import Model
import Tensors

/// Autoregressive sampling: each new token re-runs the model on the last `context` tokens.
public struct Generator {
    public let model: LanguageModel
    public let tokenizer: Tokenizer

    public init(model: LanguageModel, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Continues `prompt`; `leading` (a domain prompt token) stays first in every window.
    public func generate(prompt: String, count: Int, temperature: Float, topK: Int, seed: UInt64, leading: Int32? = nil) -> String {
        var context = tokenizer.encode(prompt)
        if context.isEmpty && leading == nil { context = [tokenizer.endOfText] }
        var rng = Xoshiro256(seed: seed)
        var produced: [Int32] = []
        let v = model.config.vocab
        var probabilities = [Float](repeating: 0, count: v)
        for _ in 0..<count {
            let window = leading.map { [$0] + context.suffix(model.config.context - 1) } ?? Array(context.suffix(model.config.context))
            window.withUnsafeBufferPointer { _ = model.forward(tokens: $0.baseAddress!, targets: nil, batch: 1, seq: window.count) }
            let logits = model.logits + (window.count - 1) * v
            let next = Generator.pick(logits: logits, vocab: v, temperature: temperature, topK: topK,
                                      scratch: &probabilities, rng: &rng)
            produced.append(next)
            context.append(next)
        }
        return tokenizer.decode(produced)
    }

    public static func pick(logits: UnsafePointer<Float>, vocab v: Int, temperature: Float, topK: Int,
                     scratch p: inout [Float], rng: inout Xoshiro256) -> Int32 {
        if temperature == 0 {
            var best = 0
            for i in 1..<v where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        var cutoff = -Float.infinity
        if topK > 0 && topK < v {
            cutoff = (0..<v).map { logits[$0] }.sorted(by: >)[topK - 1]
        }
        var maxLogit = -Float.infinity
        for i in 0..<v { maxLogit = max(maxLogit, logits[i]) }
        var total = 0.0
        for i in 0..<v {
            p[i] = logits[i] >= cutoff ? Float(exp(Double((logits[i] - maxLogit) / temperature))) : 0
            total += Double(p[i])
        }
        var u = rng.nextDouble() * total
        for i in 0..<v {
            u -= Double(p[i])
            if u < 0 { return Int32(i) }
        }
        return Int32(v - 1)
    }
}
