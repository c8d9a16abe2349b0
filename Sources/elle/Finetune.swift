import ArgumentParser
import Corpus
import Communication
import Finetune
import Foundation
import Model
import Tensors
import Training

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune a pre-trained BERT as a sequence classifier and score it on a task's test split.",
        discussion: """
            --task is a folder with train.jsonl, dev.jsonl and test.jsonl (one {"text", "label"} \
            object a line), or one .jsonl file whose lines also carry "split" (docs/FINETUNE.md). \
            Each text becomes <|bos|>, the --domain's prompt token (as in pre-training; \
            --no-prompt leaves it out), then its tokens, cut to --seq. A dense head (tanh pooler, \
            then a linear layer per class, as BertForSequenceClassification) reads the encoder's \
            last hidden state at the <|bos|> position; every weight is fine-tuned with AdamW, linear \
            warmup and decay. The dev split's macro-F1 is measured every epoch (or --eval-every \
            updates); the best weights are kept and training stops after --patience evaluations \
            without a gain. Prints the test split's accuracy and macro-F1.

            Under mpirun every rank runs its share of each batch and gradients are all-reduced.
            """)

    @Option(help: "A BERT checkpoint file, or a run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "The task: a folder with train/dev/test.jsonl, or one .jsonl file with a split field.") var task: String
    @Option(help: "The task's domain: its prompt token is put after <|bos|>.") var domain: String?
    @Flag(help: "Leave the domain prompt out.") var noPrompt = false
    @Option(help: "tokenizer.json (default: the checkpoint's).") var tokenizer: String?
    @Option(help: "Tokens per sequence, at most the model's context (default: the context).") var seq: Int?
    @Option(help: "Examples per update, over all ranks.") var batch: Int = 16
    @Option(help: "Training epochs at most.") var epochs: Int = 10
    @Option(help: "Peak learning rate.") var lr: Float = 3e-4
    @Option(help: "Warmup as a fraction of all updates.") var warmup: Double = 0.1
    @Option(help: "AdamW weight decay (matrices and embeddings).") var weightDecay: Float = 0.01
    @Option(help: "Dropout in the encoder (default: the checkpoint's).") var dropout: Float?
    @Option(help: "Dropout on the pooled vector.") var headDropout: Float = 0.1
    @Option(help: "Dev evaluations without a gain before stopping.") var patience: Int = 3
    @Option(help: "Updates between dev evaluations (0: every epoch).") var evalEvery: Int = 0
    @Option(help: "Seed of the head's initialization, data order and dropout.") var seed: UInt64 = 1
    @Option(help: "Write the result (test and dev scores, settings) as JSON to this file.") var result: String?
    @Option(help: "Write each dev evaluation's scores (and the training loss) as TensorBoard event files into this folder.")
    var tensorboard: String?
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if domain == nil && !noPrompt { throw ValidationError("--domain NAME is required (or --no-prompt for none)") }
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if !(lr > 0) { throw ValidationError("--lr must be positive") }
        if !(0..<1).contains(warmup) { throw ValidationError("--warmup must be in [0, 1)") }
        if patience < 1 { throw ValidationError("--patience must be at least 1") }
        if let seq, seq < 2 { throw ValidationError("--seq must be at least 2") }
        if let dropout, dropout < 0 || dropout >= 1 { throw ValidationError("--dropout must be in [0, 1)") }
        if headDropout < 0 || headDropout >= 1 { throw ValidationError("--head-dropout must be in [0, 1)") }
    }

    func run() throws {
        let communicator = try makeCommunicator(watchdogSeconds: parallel.watchdog)
        try Job.run(communicator) { try finetune(communicator) }
    }

    func finetune(_ communicator: Communicator) throws {
        let threads = Runtime.configureThreads(compute.threads, ranksOnThisHost: communicator.localSize, quiet: !communicator.isRoot)
        let log = communicator.isRoot
        StopSignal.install()
        let (saved, path) = try RunFolder.readOnRoot(checkpoint, communicator: communicator)
        guard saved.config.architecture == .bert else {
            throw JobError("\(path) holds a \(saved.config.architecture) model; elle finetune classifies with a BERT")
        }
        guard let parameters = saved.tensor("parameters") else { throw JobError("\(path) holds no parameters tensor") }
        let tokenizerPath = tokenizer ?? saved.state.options.tokenizer
        let bpe: SubwordTokenizer
        do { bpe = try TokenizerFile.load(tokenizerPath) } catch {
            throw JobError("tokenizer \(tokenizerPath) (from \(tokenizer == nil ? "the checkpoint; pass --tokenizer" : "--tokenizer")): \(error)")
        }
        var config = saved.config
        if let dropout { config.dropout = dropout }
        if config.padToken == nil { config.padToken = bpe.pad }
        guard config.vocab >= bpe.vocabularySize else {
            throw JobError("\(tokenizerPath) has \(bpe.vocabularySize) tokens but the model in \(path) only \(config.vocab)")
        }
        var prompt: Int32?
        if !noPrompt, let domain {
            guard let id = bpe.promptId(domain: domain) else {
                throw JobError("--domain \(domain): \(tokenizerPath) has no prompt token for it (its domains: \(bpe.promptDomains.joined(separator: ", ")))")
            }
            prompt = id
        }
        let t = seq ?? config.context
        guard t <= config.context else { throw JobError("--seq \(t) is longer than the model's context \(config.context)") }
        let task: ClassificationTask
        do { task = try ClassificationTask(path: self.task) } catch let error as TaskError { throw JobError("\(error)") }
        let format = SequenceFormat(beginToken: bpe.beginOfSequence, prompt: prompt, padToken: bpe.pad, seq: t)
        let train = EncodedSplit(task.train, tokenizer: bpe, format: format)
        let dev = EncodedSplit(task.dev, tokenizer: bpe, format: format)
        let test = EncodedSplit(task.test, tokenizer: bpe, format: format)

        let model = try BERT(config: config, parameters: parameters)
        model.precision = compute.precision ?? .fp32  // the encoder's products; the classifier head's stay float32
        Runtime.announce(precision: model.precision, quiet: !log)
        let head = ClassifierHead(width: config.width, classes: task.labels.count)
        head.initialize(seed: seed)
        var options = FineTuneOptions()
        options.batch = batch
        options.epochs = epochs
        options.lr = lr
        options.warmup = warmup
        options.adam.weightDecay = weightDecay
        options.headDropout = headDropout
        options.patience = patience
        options.evalEvery = evalEvery
        options.seed = seed
        let tuner = try FineTuner(model: model, head: head, options: options, communicator: communicator)
        if log {
            print("model \(config) from \(path)")
            print("task \(self.task): \(task.labels.count) classes (\(task.labels.joined(separator: ", "))); train \(train.count), dev \(dev.count), test \(test.count) examples; "
                  + "sequences <|bos|>\(prompt.map { " <|domain:\(domain!)|> (id \($0))" } ?? " (no prompt)") + text, cut to \(t) tokens "
                  + String(format: "(%.0f%% of train texts cut)", 100 * Double(train.sequences.filter { $0.count == t }.count) / Double(train.count)))
            print("fine-tuning all \(formatCount(model.parameterCount + head.parameterCount)) parameters: \(epochs) epochs at most of batch \(batch) over \(communicator.size) rank(s), lr \(lr) (warmup \(warmup), linear decay), patience \(patience), \(threads) thread(s)")
            Runtime.flush()
        }
        let start = Date()
        let outcome = try tuner.train(train, dev: dev, tensorboard: tensorboard, log: { line in if log { print(line); Runtime.flush() } })
        let scores = try tuner.evaluate(test)
        let seconds = Date().timeIntervalSince(start)
        guard log else { return }
        print(String(format: "test accuracy %.4f macro-F1 %.4f (%d examples; best dev macro-F1 %.4f at update %d of %d%@; %.0f s)",
                     scores.accuracy, scores.macroF1, scores.count, outcome.bestDev.macroF1, outcome.bestStep, outcome.updates,
                     outcome.stoppedEarly ? ", stopped early" : "", seconds))
        if let result {
            struct Record: Encodable {
                var checkpoint: String, task: String, domain: String?, prompt: Bool, seed: UInt64
                var test: ClassificationScores, dev: ClassificationScores
                var updates: Int, bestStep: Int, stoppedEarly: Bool, seconds: Double, ranks: Int
                var labels: [String], options: FineTuneOptions, seq: Int
            }
            let record = Record(checkpoint: path, task: self.task, domain: domain, prompt: prompt != nil, seed: seed, test: scores,
                                dev: outcome.bestDev, updates: outcome.updates, bestStep: outcome.bestStep, stoppedEarly: outcome.stoppedEarly,
                                seconds: seconds, ranks: communicator.size, labels: task.labels, options: options, seq: t)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try writeFileAtomically(String(decoding: try encoder.encode(record), as: UTF8.self) + "\n", to: result)
        }
    }
}
