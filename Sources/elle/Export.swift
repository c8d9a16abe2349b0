import ArgumentParser
import Foundation
import Interop
import Training

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint as a Hugging Face model folder.",
        discussion: """
            --format hf writes model.safetensors (float32), config.json, tokenizer.json and \
            tokenizer_config.json, which transformers loads as GPT2LMHeadModel (GPT) or BertForMaskedLM \
            (BERT) and AutoTokenizer with no elle code. The output layer is tied to the token \
            embedding, so lm_head.weight (cls.predictions.decoder.weight) is not stored. Special and domain-prompt tokens become added tokens. A byte-level \
            checkpoint (vocabulary 257) gets a tokenizer.json of the 256 bytes plus end-of-text \
            that gives the same ids as elle's byte tokenizer. See docs/INTEROP.md.
            """)

    enum Format: String, ExpressibleByArgument { case hf }

    @Option(help: "Checkpoint file, or a run folder (its newest valid checkpoint).") var checkpoint: String
    @Option(help: "Output format: hf (Hugging Face transformers).") var format: Format
    @Option(help: "Folder to write (created if needed; files in it are replaced).") var out: String
    @Option(help: "The checkpoint's tokenizer.json, when it is no longer at the path the checkpoint records.")
    var tokenizer: String?

    func run() throws {
        let (saved, path) = try RunFolder.read(checkpoint)
        guard let parameters = saved.tensor("parameters") else { throw CheckpointError(path: path, "holds no parameters tensor") }
        let name = tokenizer ?? saved.state.options.tokenizer
        let model: ModelTokenizer
        do {
            model = try ModelTokenizer.load(named: name)
        } catch {
            throw CommandError("cannot read the tokenizer of \(path) (\(error)); pass --tokenizer FILE")
        }
        let summary = try HFModelFolder.write(
            config: saved.config, parameters: parameters, tokenizer: model, to: out,
            provenance: ["checkpoint": path, "step": String(saved.state.step)])
        print("exported \(path) (\(saved.config)) as \(summary.modelClass) to \(out)")
        print(String(format: "  %d tensors, %.1f MB float32; %@", summary.tensors, Double(summary.bytes) / 1e6,
                     summary.files.joined(separator: ", ")))
        switch model {
        case .bytes:
            print("  tokenizer: elle's byte tokenizer (256 bytes + <|endoftext|> 256) as a byte-level BPE without merges")
        case .bpe(let t):
            print("  tokenizer: \(name), \(t.vocabularySize) tokens (\(t.specials.count) special, added tokens in tokenizer.json)")
        case .wordPiece(let t):
            print("  tokenizer: \(name), WordPiece, \(t.vocabularySize) tokens (\(t.specialTokens.count) special, added tokens in tokenizer.json)")
        }
    }
}
