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
    @Option(help: "Also checkpoint when this many minutes have passed since the last checkpoint (0: off); rank 0's clock decides for every rank. A resumed run keeps its setting.")
    var checkpointMinutes: Double = TrainingOptions.defaultCheckpointMinutes
    @Option(help: "A lifelong stage plan (YAML): train a model over a stream of domains, growing it between them (docs/LIFELONG.md). Model, data and optimization flags then come from the plan.")
    var config: String?
    @Flag(help: "Continue the run in --out from its newest checkpoint.") var resume = false
    @Option(help: "Start a new run (step 0, these options) from a checkpoint's model (file or run folder), e.g. one from `elle grow`: its shape and parameters, and its Adam moments if it holds them. Model-shape options are ignored.")
    var initFrom: String?
    @Option(help: "Stop (with a checkpoint) after this update, though the schedule spans --steps; continue later with --resume.")
    var stopAfter: Int?
    @Option(help: "Print a sample of this many tokens when training ends (0: none).") var sampleTokens: Int = 0
    @Option(help: "Also write the metrics as TensorBoard event files into this folder, one run per folder (`tensorboard --logdir` its parent to compare runs). A resumed plain run keeps writing to its folder; a plan may name it (key tensorboard).")
    var tensorboard: String?
    @Option(help: "MiB per gradient all-reduce bucket on several ranks, started while backward runs (0: one all-reduce after backward; default \(TrainingOptions.defaultBucketMB)). May change on --resume.")
    var bucketMB: Double?
    @Option(help: "ZeRO stage: 1 shards Adam's moments and the update over the ranks (8/N instead of 8 bytes per parameter; same results as 0); 0: every rank keeps the whole optimizer. Overrides a plan's key zero; may change on --resume.")
    var zero: Int?
    @Option(help: "What gradients cross the network as: fp32 (default; exact, the same for any rank count) or bf16 (half the bytes; each rank's values rounded once, sums in float32). Overrides a plan's key allreduceDType; may change on --resume.")
    var allreduceDtype: Precision?
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
        if !(checkpointMinutes >= 0 && checkpointMinutes.isFinite) { throw ValidationError("--checkpoint-minutes must be 0 (off) or a positive number of minutes") }
    }

    func run() throws {
        let communicator = try makeCommunicator(watchdogSeconds: parallel.watchdog)
        try Job.run(communicator) { try train(communicator) }
    }

    func train(_ communicator: Communicator) throws {
        _ = Runtime.configureThreads(compute.threads, ranksOnThisHost: communicator.localSize, quiet: !communicator.isRoot)
        try Job.printRanks(communicator)
        StopSignal.install()
        if let config {
            try trainLifelong(plan: config, out: out, resume: resume, stopAfter: stopAfter, tensorboard: tensorboard,
                              precision: compute.precision, zero: zero, allreduceDType: allreduceDtype, communicator: communicator)
            return
        }
        let run: PlainRun
        if resume {
            run = try PlainRun.resume(folder: out, communicator: communicator) { options in
                if let steps { options.steps = steps }
                if let data { options.dataPath = data }  // e.g. another node's copy (contents are compared)
                if let bucketMB { options.bucketMB = bucketMB }
                if let zero { options.zero = zero }
                if let allreduceDtype { options.allreduceDType = allreduceDtype }
                if let tensorboard { options.tensorboard = tensorboard }
                if let precision = compute.precision { options.precision = precision }
            }
            if ki.isSet && run.trainer.options.distillation == nil {
                throw CommandError("--teacher/--kd-cache: the run in \(out) was started without knowledge inheritance")
            }
        } else {
            let total = steps ?? 1000
            var options = TrainingOptions(
                batch: batch, seq: seq, steps: total,
                schedule: LearningRateSchedule(kind: LearningRateSchedule.Kind(rawValue: schedule)!,
                                               peak: lr, warmup: warmup, total: total, minimum: minLr),
                dataPath: data!)
            options.domain = domain
            options.accumulation = accumulation
            options.adam = AdamWSettings(beta1: 0.9, beta2: beta2, epsilon: 1e-8, weightDecay: weightDecay)
            options.clip = clip > 0 ? clip : nil
            options.seed = seed
            options.logEvery = logEvery
            options.evalEvery = evalEvery
            options.evalBatches = evalBatches
            options.checkpointEvery = checkpointEvery
            options.checkpointMinutes = checkpointMinutes
            options.bucketMB = bucketMB
            options.zero = zero
            options.allreduceDType = allreduceDtype
            options.distillation = ki.options(steps: total)
            options.tensorboard = tensorboard
            options.precision = compute.precision ?? .fp32
            let shape = ModelConfig(architecture: model.architecture, layers: model.layers, width: model.width,
                                    heads: model.heads, vocab: 1, context: model.context ?? seq, ffn: model.ffn, dropout: dropout)
            run = try PlainRun.start(options: options, shape: shape, initFrom: initFrom,
                                     growth: { try growth.schedule(source: $0, steps: total, seed: seed) },
                                     policy: { try growth.policy(source: $0, seed: seed) },
                                     folder: out, communicator: communicator)
        }
        Runtime.announce(precision: run.trainer.options.matrixPrecision, quiet: !communicator.isRoot)
        run.trainer.replicaCheckEvery = checkReplicasEvery
        try run.trainer.attachKnowledgeInheritance(teacher: ki.teacher, cache: ki.kdCache) { run.output.log($0) }
        try run.run(stopAfter: stopAfter, checkpointMinutes: run.trainer.options.checkpointMinutes ?? 0, sampleTokens: sampleTokens)
    }
}
