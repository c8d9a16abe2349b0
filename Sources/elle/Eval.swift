import ArgumentParser
import Foundation
import Interop
import Model
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a checkpoint's model on given tokens: the loss of each sequence, and optionally its logits.",
        discussion: """
            Dropout is off. The loss is the mean next-token cross-entropy of a sequence. --logits \
            writes a safetensors file with `tokens` (I32, [N, T]) and `logits` (F32, [N, T, V]), \
            which scripts/check_hf_interop.py compares with transformers.
            """)

    @Option(help: "Checkpoint file, or a run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "Token ids, one sequence per line, separated by spaces or commas; every line the same length, at most the model's context.")
    var tokens: String?
    @Option(help: "A UTF-8 text file, encoded with the checkpoint's tokenizer and cut to the model's context, as one sequence.")
    var text: String?
    @Option(help: "Write the tokens and logits to this safetensors file.") var logits: String?
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if (tokens == nil) == (text == nil) { throw ValidationError("give exactly one of --tokens FILE and --text FILE") }
    }

    func run() throws {
        _ = Runtime.configureThreads(compute.threads)
        let path = try resolveCheckpoint(checkpoint)
        let saved = try Checkpoint.read(from: path)
        guard let parameters = saved.tensor("parameters") else { throw CheckpointError(path: path, "holds no parameters tensor") }
        let model = try makeModel(config: saved.config, parameters: parameters)
        let c = saved.config

        var sequences: [[Int32]]
        if let text {
            guard let content = try? String(contentsOfFile: text, encoding: .utf8) else { throw CommandError("--text \(text) cannot be read as UTF-8") }
            let tokenizer = try TrainingData.tokenizer(named: saved.state.options.tokenizer)
            sequences = [Array(tokenizer.encode(content).prefix(c.context))]
        } else {
            sequences = try Eval.readTokens(tokens!)
        }
        guard let length = sequences.first?.count, length > 0 else { throw CommandError("no tokens to evaluate") }
        for (k, sequence) in sequences.enumerated() {
            guard sequence.count == length else { throw CommandError("\(tokens ?? "") line \(k + 1) has \(sequence.count) tokens, the first has \(length)") }
            guard length <= c.context else { throw CommandError("sequences of \(length) tokens are longer than the model's context \(c.context)") }
            if let bad = sequence.first(where: { $0 < 0 || Int($0) >= c.vocab }) {
                throw CommandError("sequence \(k + 1) has token \(bad), outside the model's vocabulary 0..<\(c.vocab)")
            }
        }

        var allLogits = [Float](repeating: 0, count: sequences.count * length * c.vocab)
        for (k, sequence) in sequences.enumerated() {
            let targets = Array(sequence.dropFirst()) + [-1]
            let loss = sequence.withUnsafeBufferPointer { x in
                targets.withUnsafeBufferPointer { y in
                    model.forward(tokens: x.baseAddress!, targets: y.baseAddress!, batch: 1, seq: length)
                }
            }
            allLogits.withUnsafeMutableBufferPointer { out in
                (out.baseAddress! + k * length * c.vocab).update(from: model.logits, count: length * c.vocab)
            }
            print(String(format: "sequence %d: %d tokens, loss %.6f", k + 1, length, loss))
        }
        if let logits {
            let flat = sequences.flatMap { $0 }
            try flat.withUnsafeBytes { tokenBytes in
                try allLogits.withUnsafeBufferPointer { values in
                    try SafeTensorsWriter.write([
                        SafeTensorsEntry(name: "tokens", dtype: .i32, shape: [sequences.count, length], bytes: tokenBytes),
                        SafeTensorsEntry(name: "logits", shape: [sequences.count, length, c.vocab], floats: values),
                    ], metadata: ["checkpoint": path], to: logits)
                }
            }
            print("wrote \(logits)")
        }
    }

    static func readTokens(_ path: String) throws -> [[Int32]] {
        guard let content = try? String(contentsOfFile: path, encoding: .utf8) else { throw CommandError("--tokens \(path) cannot be read") }
        var sequences: [[Int32]] = []
        for (number, line) in content.split(separator: "\n").enumerated() where !line.allSatisfy(\.isWhitespace) {
            var sequence: [Int32] = []
            for field in line.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }) {
                guard let id = Int32(field) else { throw CommandError("\(path) line \(number + 1): \(field) is not a token id") }
                sequence.append(id)
            }
            sequences.append(sequence)
        }
        return sequences
    }
}
