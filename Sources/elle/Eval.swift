import ArgumentParser
import Corpus
import Communication
import Foundation
import Interop
import Lifelong
import Model
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint: perplexity per domain, or the loss and logits of given tokens.",
        discussion: """
            Domains (the default): each domain's valid split of a prepared data folder (sequences start \
            with the domain's prompt token unless --no-prompt), sharded across ranks under mpirun; \
            prints loss and perplexity per domain and their mean (AP). Defaults come from the \
            checkpoint: its data folder, sequence length and, for a lifelong checkpoint, the domains \
            it has seen.

            Tokens (--tokens or --text): runs the model on those sequences and prints each one's mean \
            next-token loss (GPT; a BERT gives the logits of every position and no loss, and --text \
            puts <|bos|> first as in its training sequences); --logits writes a safetensors file with `tokens` (I32, [N, T]) and \
            `logits` (F32, [N, T, V]), which scripts/check_hf_interop.py compares with transformers. \
            Dropout is off in both modes.
            """)

    @Option(help: "A checkpoint file, or a run folder (its newest valid checkpoint).") var checkpoint: String
    @Option(help: "Prepared data folder (default: the one the checkpoint was trained on).") var data: String?
    @Option(help: "Comma-separated domains (default: every domain the checkpoint has seen, or all).") var domains: String?
    @Option(help: "Validation batches per domain (default: all of the valid split).") var batches: Int?
    @Flag(help: "Do not prepend the domain prompt token.") var noPrompt = false
    @Flag(help: "Print one JSON object instead of text (domain mode).") var json = false
    @Option(help: "Token ids, one sequence per line, separated by spaces or commas; every line the same length, at most the model's context.")
    var tokens: String?
    @Option(help: "A UTF-8 text file, encoded with the checkpoint's tokenizer and cut to the model's context, as one sequence.")
    var text: String?
    @Option(help: "With --tokens or --text: write the tokens and logits to this safetensors file.") var logits: String?
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if tokens != nil && text != nil { throw ValidationError("give at most one of --tokens FILE and --text FILE") }
        if logits != nil && tokens == nil && text == nil { throw ValidationError("--logits needs --tokens or --text") }
        if (tokens != nil || text != nil) && (data != nil || domains != nil || batches != nil) {
            throw ValidationError("--tokens/--text evaluate given sequences; --data, --domains and --batches are for domain perplexity")
        }
    }

    func run() throws {
        if tokens != nil || text != nil {
            _ = Runtime.configureThreads(compute.threads)
            try evaluateTokens()
            return
        }
        let communicator = try makeCommunicator(watchdogSeconds: parallel.watchdog)
        try Job.run(communicator) { try evaluateDomains(communicator) }
    }

    /// Perplexity of each domain's valid split.
    func evaluateDomains(_ communicator: Communicator) throws {
        _ = Runtime.configureThreads(compute.threads, ranksOnThisHost: communicator.localSize, quiet: !communicator.isRoot)
        let (saved, path) = try RunFolder.readOnRoot(checkpoint, communicator: communicator)
        let folder = data ?? saved.state.options.dataPath
        guard PreparedData.isPrepared(folder) else {
            throw CommandError("\(folder) is not a prepared data folder (no manifest.json); pass --data with a folder from elle data prepare")
        }
        let prepared = try PreparedData(folder: folder)
        let tokenizer = try prepared.tokenizer()
        guard tokenizer.vocabularySize <= saved.config.vocab else {
            throw CommandError("\(folder)'s tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(saved.config.vocab)")
        }
        let seen = try LifelongState(checkpoint: saved.state)
            .map { state in Array(state.matrix.domains.prefix(max(state.matrix.values.count, 1))) }
        let names = domains.map { $0.split(separator: ",").map(String.init) } ?? seen ?? prepared.manifest.domains.map(\.name)
        let entries = try names.map { try prepared.domain($0) }
        let model = try makeModel(config: saved.config, parameters: saved.tensor("parameters"))
        var options = saved.state.options
        options.evalBatches = batches ?? Int.max
        if let precision = compute.precision { options.precision = precision }  // else the run's own
        Runtime.announce(precision: options.matrixPrecision, quiet: !communicator.isRoot)
        let trainer = try Trainer(model: model, options: options, train: try prepared.stream(entries[0].train),
                                  valid: try prepared.stream(entries[0].valid), communicator: communicator,
                                  state: nil, moments: nil)
        var rows: [(String, Double)] = []
        for entry in entries {
            let prompt = noPrompt ? nil : (entry.promptToken ?? tokenizer.promptId(domain: entry.name))
            guard let loss = try trainer.evaluate(try prepared.stream(entry.valid), batches: options.evalBatches, prompt: prompt) else {
                throw CommandError("domain \(entry.name)'s valid split is shorter than one sequence of \(options.seq) tokens")
            }
            rows.append((entry.name, Double(loss)))
        }
        guard communicator.isRoot else { return }
        let ap = rows.map { exp($0.1) }.reduce(0, +) / Double(rows.count)
        if json {
            let fields: [String: Any] = ["checkpoint": path, "data": folder, "prompts": !noPrompt, "ap": ap,
                                         "domains": rows.map { ["domain": $0.0, "loss": $0.1, "perplexity": exp($0.1)] }]
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("checkpoint \(path), data \(folder), \(noPrompt ? "no prompts" : "domain prompts")")
            let width = rows.map(\.0.count).max() ?? 0
            for (name, loss) in rows {
                print(name.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: "  loss %.4f  perplexity %.2f", loss, exp(loss)))
            }
            print(String(format: "AP %.2f over %d domain(s)", ap, rows.count))
        }
    }

    /// Loss (and logits) of the given sequences.
    func evaluateTokens() throws {
        let (saved, path) = try RunFolder.read(checkpoint)
        let model = try saved.model(path: path)
        model.precision = compute.precision ?? saved.state.options.matrixPrecision
        Runtime.announce(precision: model.precision)
        let c = saved.config

        var sequences: [[Int32]]
        if let text {
            guard let content = try? String(contentsOfFile: text, encoding: .utf8) else { throw CommandError("--text \(text) cannot be read as UTF-8") }
            let tokenizer = try TrainingData.tokenizer(named: saved.state.options.tokenizer)
            var ids = tokenizer.encode(content)
            if c.architecture == .bert, let bpe = tokenizer as? SubwordTokenizer { ids.insert(bpe.beginOfSequence, at: 0) }
            sequences = [Array(ids.prefix(c.context))]
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
            // GPT: next-token targets. BERT: no targets, so its head predicts every position.
            let targets: [Int32]? = c.architecture == .gpt ? Array(sequence.dropFirst()) + [-1] : nil
            let loss = sequence.withUnsafeBufferPointer { x -> Float in
                guard let targets else { return model.forward(tokens: x.baseAddress!, targets: nil, batch: 1, seq: length) }
                return targets.withUnsafeBufferPointer { model.forward(tokens: x.baseAddress!, targets: $0.baseAddress!, batch: 1, seq: length) }
            }
            allLogits.withUnsafeMutableBufferPointer { out in
                (out.baseAddress! + k * length * c.vocab).update(from: model.logits, count: length * c.vocab)
            }
            if targets == nil {
                print("sequence \(k + 1): \(length) tokens (masked LM: logits at every position, no loss)")
            } else {
                print(String(format: "sequence %d: %d tokens, loss %.6f", k + 1, length, loss))
            }
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
