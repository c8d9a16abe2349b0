import ArgumentParser
import Corpus
import Foundation

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare text domains for training (tokenizer, token shards, manifest).",
        subcommands: [Prepare.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tokenize domain folders into train/valid/memory shards with a manifest.",
            discussion: """
                RAW holds one folder per domain with .txt files (scripts/fetch-corpora.sh builds \
                corpora/text; data/sample is a small one). OUT gets tokenizer.json, \
                DOMAIN/{train,valid,memory}-NNN.bin and manifest.json (docs/DATA.md). The same \
                inputs and seed give the same bytes, whatever --threads.
                """)

        @Option(help: "Folder of domain folders.") var raw: String
        @Option(help: "Output folder.") var out: String
        @Option(help: "gpt2 (GPT-2's files in --gpt2-dir), a tokenizer.json (byte-level BPE or WordPiece) or BERT vocab.txt path, a Hugging Face folder holding one, or train:SIZE.")
        var tokenizer: String = "gpt2"
        @Option(help: "Folder with GPT-2's vocab.json and merges.txt (scripts/fetch-gpt2.sh).")
        var gpt2Dir: String = "corpora/gpt2"
        @Option(help: "Only these domains (comma-separated; default: all).") var domains: String?
        @Option(help: "Seed of the splits and of the training sample.") var seed: UInt64 = 1
        @Option(help: "Share of each domain's tokens held out for validation.") var validFraction: Double = 0.05
        @Option(help: "Share of each domain's training tokens copied to its replay memory split.") var memoryFraction: Double = 0.1
        @Option(help: "The longest sequence (tokens) you will train with: every domain's splits must hold one, or prepare stops naming the domain.")
        var seq: Int = 128
        @Option(help: "Megabytes of text a trained vocabulary learns from (spread over domains).") var trainMb: Double = 20
        @OptionGroup var compute: ComputeOptions

        func choice() throws -> PrepareOptions.TokenizerChoice {
            if tokenizer == "gpt2" { return .gpt2(folder: gpt2Dir) }
            if tokenizer.hasPrefix("train:") {
                guard let size = Int(tokenizer.dropFirst(6)), size > 300 else {
                    throw ValidationError("--tokenizer train:SIZE needs a vocabulary size above 300 (got \(tokenizer))")
                }
                return .train(vocabularySize: size)
            }
            guard FileManager.default.fileExists(atPath: tokenizer) else {
                throw CommandError("--tokenizer \(tokenizer): no such tokenizer.json, vocab.txt or folder (or use gpt2, train:SIZE)")
            }
            return .file(tokenizer)
        }

        func validate() throws {
            _ = try choice()
            if !(0..<1).contains(validFraction) { throw ValidationError("--valid-fraction must be in [0, 1)") }
            if !(0..<1).contains(memoryFraction) { throw ValidationError("--memory-fraction must be in [0, 1)") }
            if seq < 1 { throw ValidationError("--seq must be at least 1") }
            if trainMb <= 0 { throw ValidationError("--train-mb must be positive") }
        }

        func run() throws {
            // No BLAS here: only the thread count matters (no OpenBLAS kernel note).
            let threads = compute.threads ?? ProcessInfo.processInfo.activeProcessorCount
            var options = PrepareOptions(raw: raw, out: out, tokenizer: try choice())
            options.seed = seed
            options.validFraction = validFraction
            options.memoryFraction = memoryFraction
            options.seq = seq
            options.trainBytes = Int(trainMb * 1e6)
            options.threads = threads
            options.domains = domains?.split(separator: ",").map(String.init) ?? []
            let manifest = try DataPreparer.prepare(options) { print($0); Runtime.flush() }
            print("wrote \(out)/manifest.json: \(manifest.domains.count) domain(s), vocabulary \(manifest.tokenizer.vocabularySize), uint\(manifest.tokenBytes * 8) shards")
        }
    }
}
