import ArgumentParser
import Corpus
import Foundation
import Model
import Tensors
import Training

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a checkpoint.")

    @Option(help: "A checkpoint file, or a run folder (its newest valid checkpoint).") var checkpoint: String
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
        let (saved, path) = try RunFolder.read(checkpoint)
        guard saved.config.architecture == .gpt else {
            throw CommandError("\(path) holds a \(saved.config.architecture) model (masked LM), which does not generate text; elle sample needs a GPT")
        }
        let model = try saved.model(path: path)
        model.precision = compute.precision ?? saved.state.options.matrixPrecision
        Runtime.announce(precision: model.precision)
        let tokenizer = try TrainingData.tokenizer(named: saved.state.options.tokenizer)
        var leading: Int32?
        if let domain {
            guard let bpe = tokenizer as? SubwordTokenizer, let id = bpe.promptId(domain: domain) else {
                throw CommandError("--domain \(domain): the checkpoint's tokenizer has no prompt token for it")
            }
            leading = id
        }
        let text = Generator(model: model, tokenizer: tokenizer)
            .generate(prompt: prompt, count: tokens, temperature: temperature, topK: topK, seed: seed, leading: leading)
        print(prompt + text)
    }
}
