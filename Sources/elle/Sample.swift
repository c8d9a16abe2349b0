import ArgumentParser
import Corpus
import Foundation
import Model
import Tensors
import Training

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a checkpoint.")

    @Option(help: "A checkpoint file, or a run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "Text to continue.") var prompt: String = "\n"
    @Option(help: "Tokens to generate.") var tokens: Int = 200
    @Option(help: "Softmax temperature (0: greedy).") var temperature: Float = 0.8
    @Option(help: "Sample from the k most likely tokens (0: all).") var topK: Int = 40
    @Option(help: "Sampling seed.") var seed: UInt64 = 1
    @Option(help: "Start from this domain's prompt token (models trained with domain prompts, e.g. by a lifelong plan).")
    var domain: String?
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if tokens < 0 { throw ValidationError("--tokens must not be negative") }
        if temperature < 0 { throw ValidationError("--temperature must not be negative") }
        if topK < 0 { throw ValidationError("--top-k must not be negative") }
    }

    func run() throws {
        _ = Runtime.configureThreads(compute.threads)
        var path = checkpoint
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            guard let latest = Trainer.latestCheckpoint(in: path) else {
                throw ValidationError("\(path) is a folder without a `latest` checkpoint pointer")
            }
            path = latest
        }
        let saved = try Checkpoint.read(from: path)
        guard let parameters = saved.tensor("parameters") else {
            throw CheckpointError(path: path, "holds no parameters tensor")
        }
        guard saved.config.architecture == .gpt else {
            throw ValidationError("\(path) holds a \(saved.config.architecture) model (masked LM), which does not generate text; elle sample needs a GPT")
        }
        let model = try makeModel(config: saved.config, parameters: parameters)
        let tokenizer = try TrainingData.tokenizer(named: saved.state.options.tokenizer)
        var leading: Int32?
        if let domain {
            guard let bpe = tokenizer as? BPETokenizer, let id = bpe.promptId(domain: domain) else {
                throw ValidationError("--domain \(domain): the checkpoint's tokenizer has no prompt token for it")
            }
            leading = id
        }
        let text = Generator(model: model, tokenizer: tokenizer)
            .generate(prompt: prompt, count: tokens, temperature: temperature, topK: topK, seed: seed, leading: leading)
        print(prompt + text)
    }
}

/// Autoregressive sampling: each new token re-runs the model on the last `context` tokens.
struct Generator {
    let model: LanguageModel
    let tokenizer: Tokenizer

    /// Continues `prompt`; `leading` (a domain prompt token) stays first in every window.
    func generate(prompt: String, count: Int, temperature: Float, topK: Int, seed: UInt64, leading: Int32? = nil) -> String {
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

    static func pick(logits: UnsafePointer<Float>, vocab v: Int, temperature: Float, topK: Int,
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
