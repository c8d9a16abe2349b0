import ArgumentParser
import Corpus
import Communication
import Foundation
import Model
import Tensors
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a GPT or a BERT on a text file or folder of .txt files, or on prepared data.",
        discussion: """
            Logs loss and tokens/s, writes checkpoints to --out (step-NNNNNNNN.ckpt, with `latest` \
            naming the newest) and metrics to --out/metrics.jsonl. --resume continues the run in \
            --out from its newest checkpoint with the saved settings, bit for bit.

            Started by mpirun or srun, every rank trains on its own micro-batches and gradients \
            are averaged across ranks (data parallel); rank 0 logs and writes checkpoints. \
            See cluster/README.md.

            --grow-at N --grow-to L/D/H grows the model after update N (ELLE's growth, as \
            `elle grow` does it; the --grow-* options are `elle grow`'s): rank 0 grows and sends \
            the grown model to every rank, which checks it; training continues on it with the \
            same schedule and data order. See docs/GROWTH.md.

            --model bert trains a masked LM on a prepared data folder (`elle data prepare`: its \
            tokenizer has the <|bos|>, <|mask|> and <|pad|> tokens BERT needs): each sequence is \
            <|bos|> and text, 15% of its positions are predicted (80% shown as <|mask|>, 10% as a \
            random token, 10% unchanged), with new masks every time, keyed by the seed, update and \
            micro-batch so resumed and multi-rank runs are exact. Losses are per masked token.
            """)

    @Option(help: "Text file or folder of .txt files (byte-level tokens), or a folder made by `elle data prepare` (BPE tokens). With --resume: where to find the run's data if not at its saved path.")
    var data: String?
    @Option(help: "Domain of a prepared --data folder (default: its only domain).") var domain: String?
    @Option(help: "Run folder for checkpoints and metrics.") var out: String = "runs/default"
    @OptionGroup var model: ModelOptions
    @Option(help: "Tokens per sequence.") var seq: Int = 128
    @Option(help: "Sequences per micro-batch.") var batch: Int = 8
    @Option(help: "Micro-batches per update (gradient accumulation).") var accumulation: Int = 1
    @Option(help: "Total updates (on --resume: raise it to train further).") var steps: Int?
    @Option(help: "Peak learning rate.") var lr: Float = 1e-3
    @Option(help: "LR schedule: \(LearningRateSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var schedule: String = "cosine"
    @Option(help: "Warmup updates.") var warmup: Int = 50
    @Option(help: "Final LR of the cosine schedule.") var minLr: Float = 1e-4
    @Option(help: "AdamW weight decay (matrices and embeddings).") var weightDecay: Float = 0.1
    @Option(help: "Adam beta2.") var beta2: Float = 0.98
    @Option(help: "Clip the global gradient norm at this value (0: off).") var clip: Float = 1.0
    @Option(help: "Dropout probability.") var dropout: Float = 0.1
    @Option(help: "Seed for initialization, data order and dropout.") var seed: UInt64 = 1
    @Option(help: "Log every N updates.") var logEvery: Int = 10
    @Option(help: "Validate every N updates (0: only at the end).") var evalEvery: Int = 100
    @Option(help: "Validation batches per evaluation.") var evalBatches: Int = 20
    @Option(help: "Checkpoint every N updates (0: only at the end).") var checkpointEvery: Int = 0
    @Option(help: "A lifelong stage plan (YAML): train a model over a stream of domains, growing it between them (docs/LIFELONG.md). Model, data and optimization flags then come from the plan.")
    var config: String?
    @Flag(help: "Continue the run in --out from its newest checkpoint.") var resume = false
    @Option(help: "Start a new run (step 0, these options) from a checkpoint's model (file or run folder), e.g. one from `elle grow`: its shape and parameters, and its Adam moments if it holds them. Model-shape options are ignored.")
    var initFrom: String?
    @Option(help: "Stop (with a checkpoint) after this update, though the schedule spans --steps; continue later with --resume.")
    var stopAfter: Int?
    @Option(help: "Print a sample of this many tokens when training ends (0: none).") var sampleTokens: Int = 0
    @Option(help: "MiB per gradient all-reduce bucket on several ranks, started while backward runs (0: one all-reduce after backward; default \(TrainingOptions.defaultBucketMB)). May change on --resume.")
    var bucketMB: Double?
    @Option(help: "Compare a hash of the parameters across ranks every N updates (0: only at checkpoints).")
    var checkReplicasEvery: Int = 100
    @OptionGroup var growth: TrainGrowthOptions
    @OptionGroup var ki: TrainKIOptions
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if config != nil {
            if data != nil { throw ValidationError("--config names the data in the plan; leave out --data") }
            if initFrom != nil || growth.isSet { throw ValidationError("--config: growth and initialization come from the plan") }
            if ki.isSet { throw ValidationError("--config: knowledge inheritance comes from the plan (a stage's ki block)") }
            return
        }
        if !resume && data == nil { throw ValidationError("--data is required (a text file or a folder of .txt files)") }
        if resume && initFrom != nil { throw ValidationError("--init-from starts a new run; it cannot be combined with --resume") }
        if resume && (ki.kdSteps != nil || ki.kdTopK != nil) {
            throw ValidationError("--kd-* options set up a new run; a resumed run keeps its knowledge-inheritance settings (--teacher or --kd-cache only relocate its teacher)")
        }
        if resume && growth.isSet {
            throw ValidationError("--grow-* options set up a new run; a resumed run keeps the growth it was started with (to grow a finished run, use elle grow)")
        }
        if LearningRateSchedule.Kind(rawValue: schedule) == nil {
            throw ValidationError("--schedule must be one of \(LearningRateSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", ")) (got \(schedule))")
        }
        if seq < 1 { throw ValidationError("--seq must be at least 1") }
        if let context = model.context, context < seq { throw ValidationError("--context \(context) is shorter than --seq \(seq)") }
        if dropout < 0 || dropout >= 1 { throw ValidationError("--dropout must be in [0, 1)") }
        if checkReplicasEvery < 0 { throw ValidationError("--check-replicas-every must not be negative") }
    }

    func run() throws {
        let communicator = try makeCommunicator(watchdogSeconds: parallel.watchdog)
        try Job.run(communicator) { try train(communicator) }
    }

    func train(_ communicator: Communicator) throws {
        let threads = Runtime.configureThreads(compute.threads, ranksOnThisHost: communicator.localSize,
                                               quiet: !communicator.isRoot)
        let log = communicator.isRoot
        try Job.printRanks(communicator)
        if let config {
            try trainLifelong(plan: config, out: out, resume: resume, stopAfter: stopAfter, communicator: communicator)
            return
        }

        let trainer: Trainer
        let tokenizer: Tokenizer
        if resume {
            // Rank 0 reads the checkpoint and sends it to the others: no shared file system needed.
            let (saved, path) = try Checkpoint.readLatestOnRoot(in: out, communicator: communicator)
            var options = saved.state.options
            if let steps { options.steps = steps }
            if let data { options.dataPath = data }  // e.g. another node's copy (contents are compared)
            if let bucketMB { options.bucketMB = bucketMB }
            if let precision = compute.precision { options.precision = precision }
            let loaded = try TrainingData(path: options.dataPath, domain: options.domain, validFraction: options.validFraction)
            tokenizer = loaded.tokenizer
            trainer = try Trainer.resume(from: saved, path: path, train: loaded.train, valid: loaded.valid,
                                         communicator: communicator, options: options)
            if log { print("resumed \(path) at step \(trainer.step) of \(options.steps)") }
        } else {
            let loaded = try TrainingData(path: data!, domain: domain, validFraction: 0.05)
            tokenizer = loaded.tokenizer
            var config = ModelConfig(architecture: model.architecture, layers: model.layers, width: model.width,
                                     heads: model.heads, vocab: tokenizer.vocabularySize, context: model.context ?? seq,
                                     ffn: model.ffn, dropout: dropout)
            let initial = try initFrom.map { try Checkpoint.read(from: try resolveCheckpoint($0)) }
            if let initial {
                config = initial.config
                config.dropout = dropout
                if config.vocab < tokenizer.vocabularySize {
                    throw ValidationError("--init-from: the model's vocabulary (\(config.vocab)) is smaller than the tokenizer's (\(tokenizer.vocabularySize))")
                }
            }
            var maskedLM: MaskedLM?
            if config.architecture == .bert {
                guard let bpe = tokenizer as? BPETokenizer else {
                    let who = initial == nil ? "--model bert" : "the --init-from model is a BERT, which"
                    throw ValidationError("\(who) needs a prepared data folder (elle data prepare): its BPE tokenizer has the <|bos|>, <|mask|> and <|pad|> tokens BERT uses, and \(data!) is raw text, read as byte tokens without them")
                }
                config.padToken = bpe.pad
                maskedLM = MaskedLM(tokenizer: bpe)
            }
            let total = steps ?? 1000
            var options = TrainingOptions(
                batch: batch, seq: seq, steps: total,
                schedule: LearningRateSchedule(kind: LearningRateSchedule.Kind(rawValue: schedule)!,
                                               peak: lr, warmup: warmup, total: total, minimum: minLr),
                dataPath: data!)
            options.tokenizer = loaded.tokenizerName
            options.domain = loaded.domain
            options.accumulation = accumulation
            options.adam = AdamWSettings(beta1: 0.9, beta2: beta2, epsilon: 1e-8, weightDecay: weightDecay)
            options.clip = clip > 0 ? clip : nil
            options.seed = seed
            options.logEvery = logEvery
            options.evalEvery = evalEvery
            options.evalBatches = evalBatches
            options.checkpointEvery = checkpointEvery
            options.bucketMB = bucketMB
            options.growth = try growth.schedule(source: config, steps: total, seed: seed)
            options.maskedLM = maskedLM
            options.distillation = ki.options(steps: total)
            options.precision = compute.precision ?? .fp32
            let gpt = try initial.map { saved in
                guard let parameters = saved.tensor("parameters") else {
                    throw CheckpointError(path: initFrom!, "holds no parameters tensor")
                }
                return try makeModel(config: config, parameters: parameters)
            } ?? makeModel(config: config, seed: seed)
            var moments: (m: FloatBuffer, v: FloatBuffer)?
            if let initial, let m = initial.tensor("adam.m"), let v = initial.tensor("adam.v") {
                guard m.count == gpt.parameterCount, v.count == gpt.parameterCount else {
                    throw CheckpointError(path: initFrom!, "has Adam moments of a different size than its parameters")
                }
                moments = (m, v)
            }
            trainer = try Trainer(model: gpt, options: options, train: loaded.train, valid: loaded.valid,
                                  communicator: communicator, state: nil, moments: moments)
            if let initial, moments != nil { trainer.optimizer.step = initial.state.optimizerStep }
            if log, let initFrom {
                print("initialized from \(initFrom): \(moments != nil ? "Adam moments carried (optimizer step \(trainer.optimizer.step))" : "fresh optimizer")")
            }
            if log { print("data \(data!): \(loaded.summary)") }
        }
        trainer.replicaCheckEvery = checkReplicasEvery
        if resume && ki.isSet && trainer.options.distillation == nil {
            throw ValidationError("--teacher/--kd-cache: the run in \(out) was started without knowledge inheritance")
        }
        try attachKnowledgeInheritance(trainer, teacher: ki.teacher, cache: ki.kdCache, communicator: communicator)
        let options = trainer.options
        if log {
            print("model \(trainer.model.config), \(formatCount(trainer.model.parameterCount)) parameters")
            if let m = options.maskedLM {
                func percent(_ x: Float) -> String { "\(Int((x * 100).rounded()))%" }
                print("masked LM: <|bos|>\(m.prompt == nil ? "" : " and domain prompt") first, \(percent(m.maskProbability)) of positions predicted: \(percent(m.maskTokenShare)) shown as <|mask|>, \(percent(m.randomTokenShare)) as a random token, \(percent(1 - m.maskTokenShare - m.randomTokenShare)) unchanged")
            }
            if let growth = options.growth, trainer.step <= growth.step {
                let target = growth.plan.target(source: trainer.model.config)
                print("growth after update \(growth.step) to \(target) (\(formatCount(target.parameterCount)) parameters): \(growth.plan.summary)")
            }
            print("training \(options.steps) updates of \(options.batch)x\(options.seq) tokens x \(options.accumulation) micro-batch(es) x \(communicator.size) rank(s), lr \(options.schedule), \(threads) thread(s), BLAS kernel \(BLASInfo.coreName), \(Runtime.describe(options.matrixPrecision))")
        }
        Runtime.announce(precision: options.matrixPrecision, quiet: !log)
        let metrics = log ? try MetricsLog(folder: out, append: resume) : nil

        let stop = min(options.steps, stopAfter ?? options.steps)
        var windowLoss = 0.0, windowTokens = 0, windowSeconds = 0.0, windowSteps = 0, windowCE = 0.0
        // Student training FLOPs (saved in checkpoints) and, with KI, the teacher's forward FLOPs.
        func flopFields() -> [String: Any] {
            options.distillation == nil ? ["flops": trainer.flops]
                : ["flops": trainer.flops, "teacher_flops": trainer.teacherFLOPs, "total_flops": trainer.flops + trainer.teacherFLOPs]
        }
        while trainer.step < stop {
            let before = trainer.model.config
            if let grown = try trainer.growIfDue() {
                try reportGrowth(grown, from: before, trainer: trainer, metrics: metrics)
            }
            let result = try trainer.trainStep()
            guard result.loss.isFinite else {
                // The loss is averaged over all ranks, so every rank stops here together.
                throw JobError("loss became \(result.loss) at step \(result.step); lower --lr or raise --warmup")
            }
            windowLoss += Double(result.loss); windowTokens += result.tokens; windowCE += Double(result.crossEntropy)
            windowSeconds += result.seconds; windowSteps += 1
            let last = result.step == stop
            if result.step % options.logEvery == 0 || last {
                let loss = windowLoss / Double(windowSteps)
                let rate = Double(windowTokens) / windowSeconds
                let kd = options.distillation == nil ? "" : String(
                    format: " | a_t %.3f ce %.4f | FLOPs student %.3e teacher %.3e", result.distillationWeight,
                    windowCE / Double(windowSteps), trainer.flops, trainer.teacherFLOPs)
                if log {
                    print(String(format: "step %6d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms/step | %.0f tok/s",
                                 result.step, options.steps, loss, result.learningRate, result.gradientNorm,
                                 1000 * windowSeconds / Double(windowSteps), rate) + kd)
                    Runtime.flush()
                }
                var fields: [String: Any] = ["step": result.step, "loss": loss, "lr": Double(result.learningRate),
                                             "grad_norm": Double(result.gradientNorm), "tokens_per_second": rate,
                                             "tokens": trainer.tokensSeen]
                if options.distillation != nil {
                    fields["kd_weight"] = Double(result.distillationWeight)
                    fields["cross_entropy"] = windowCE / Double(windowSteps)
                }
                metrics?.write(fields.merging(flopFields()) { a, _ in a })
                windowLoss = 0; windowTokens = 0; windowSeconds = 0; windowSteps = 0; windowCE = 0
            }
            if (options.evalEvery > 0 && result.step % options.evalEvery == 0) || last {
                if let valid = try trainer.evaluate() {
                    if log { print(String(format: "step %6d | valid loss %.4f | perplexity %.2f", result.step, valid, exp(Double(valid)))) }
                    metrics?.write(["step": result.step, "valid_loss": Double(valid), "valid_perplexity": exp(Double(valid))]
                                    .merging(flopFields()) { a, _ in a })
                }
            }
            if (options.checkpointEvery > 0 && result.step % options.checkpointEvery == 0) || last {
                if let path = try trainer.saveCheckpoint(in: out) { print("checkpoint \(path)") }
            }
        }
        let hash = try trainer.verifyReplicas()
        if log { print(String(format: "parameters xxh64 %016llx, identical on %d rank(s)", hash, communicator.size)) }
        if log && sampleTokens > 0 && trainer.model.config.architecture != .gpt {
            print("no sample: a \(trainer.model.config.architecture) model does not generate text")
        } else if log && sampleTokens > 0 {
            let text = Generator(model: trainer.model, tokenizer: tokenizer)
                .generate(prompt: "\n", count: sampleTokens, temperature: 0.8, topK: 40, seed: seed)
            print("--- sample ---\n\(text)\n--------------")
        }
    }
}

/// Training tokens from raw text (byte tokenizer, validation tail) or from a prepared data folder
/// (its tokenizer, the domain's memory-mapped train and valid shards).
struct TrainingData {
    let train: TokenStream
    let valid: TokenStream
    let tokenizer: Tokenizer
    /// "bytes", or the path of the prepared folder's tokenizer.json (saved in checkpoints).
    let tokenizerName: String
    let domain: String?
    let summary: String

    init(path: String, domain: String?, validFraction: Double) throws {
        do {
            if PreparedData.isPrepared(path) {
                let prepared = try PreparedData(folder: path)
                let entry = try prepared.domain(domain)
                let bpe = try prepared.tokenizer()
                guard bpe.vocabularySize == prepared.manifest.tokenizer.vocabularySize else {
                    throw DataError(path: prepared.tokenizerPath, "has \(bpe.vocabularySize) tokens but manifest.json says \(prepared.manifest.tokenizer.vocabularySize)")
                }
                train = try prepared.stream(entry.train)
                valid = try prepared.stream(entry.valid)
                tokenizer = bpe
                tokenizerName = prepared.tokenizerPath
                self.domain = entry.name
                summary = "domain \(entry.name), \(train.count) train / \(valid.count) valid tokens (BPE, vocabulary \(bpe.vocabularySize), memory-mapped shards)"
            } else {
                if let domain { throw ValidationError("--domain \(domain) needs a prepared --data folder (elle data prepare); \(path) has no manifest.json") }
                let corpus = try TextCorpus(path: path, tokenizer: ByteTokenizer(), validFraction: validFraction)
                train = TokenStream(corpus.train)
                valid = TokenStream(corpus.valid)
                tokenizer = ByteTokenizer()
                tokenizerName = "bytes"
                self.domain = nil
                summary = "\(corpus.files.count) file(s), \(corpus.train.count) train / \(corpus.valid.count) valid tokens (bytes)"
            }
        } catch let error as DataError {
            throw ValidationError(error.description)
        }
    }

    /// The tokenizer a checkpoint was trained with (its options.tokenizer).
    static func tokenizer(named name: String) throws -> Tokenizer {
        if name == "bytes" { return ByteTokenizer() }
        do { return try BPETokenizer.load(name) } catch let error as DataError {
            throw ValidationError("the checkpoint's tokenizer: \(error.description)")
        }
    }
}

/// Appends JSON lines to `metrics.jsonl` in the run folder.
final class MetricsLog {
    private let handle: FileHandle

    init(folder: String, append: Bool) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = (folder as NSString).appendingPathComponent("metrics.jsonl")
        if !append || !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ValidationError("cannot write \(path)")
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    func write(_ fields: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        handle.write(data + Data("\n".utf8))
    }
}

func formatCount(_ n: Int) -> String {
    n >= 1_000_000 ? String(format: "%.2fM", Double(n) / 1e6) : String(format: "%.1fK", Double(n) / 1e3)
}
