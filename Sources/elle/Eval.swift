import ArgumentParser
import Data
import Distributed
import Foundation
import Lifelong
import Model
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validation perplexity of a checkpoint on domains of a prepared data folder.",
        discussion: """
            Evaluates on each domain's valid split (sequences start with the domain's prompt token \
            unless --no-prompt), sharded across ranks under mpirun, and prints loss and perplexity \
            per domain with their mean (AP). Defaults come from the checkpoint: its data folder, \
            sequence length and, for a lifelong checkpoint, the domains it has seen.
            """)

    @Option(help: "A checkpoint file, or a run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "Prepared data folder (default: the one the checkpoint was trained on).") var data: String?
    @Option(help: "Comma-separated domains (default: every domain the checkpoint has seen, or all).") var domains: String?
    @Option(help: "Validation batches per domain (default: all of the valid split).") var batches: Int?
    @Flag(help: "Do not prepend the domain prompt token.") var noPrompt = false
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var parallel: ParallelOptions

    func run() throws {
        let communicator = try makeCommunicator(watchdogSeconds: parallel.watchdog)
        try Job.run(communicator) { try evaluate(communicator) }
    }

    func evaluate(_ communicator: Communicator) throws {
        _ = Runtime.configureThreads(compute.threads, ranksOnThisHost: communicator.localSize, quiet: !communicator.isRoot)
        let (saved, path) = try Checkpoint.readOnRoot(checkpoint, communicator: communicator)
        let folder = data ?? saved.state.options.dataPath
        guard PreparedData.isPrepared(folder) else {
            throw CommandError("\(folder) is not a prepared data folder (no manifest.json); pass --data with a folder from elle data prepare")
        }
        let prepared = try PreparedData(folder: folder)
        let tokenizer = try prepared.tokenizer()
        guard tokenizer.vocabularySize <= saved.config.vocab else {
            throw CommandError("\(folder)'s tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(saved.config.vocab)")
        }
        let seen = saved.state.lifelong.flatMap { try? LifelongState.decode($0) }
            .map { state in Array(state.matrix.domains.prefix(max(state.matrix.values.count, 1))) }
        let names = domains.map { $0.split(separator: ",").map(String.init) } ?? seen ?? prepared.manifest.domains.map(\.name)
        let entries = try names.map { try prepared.domain($0) }
        let model = try makeModel(config: saved.config, parameters: saved.tensor("parameters"))
        var options = saved.state.options
        options.evalBatches = batches ?? Int.max
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
}
