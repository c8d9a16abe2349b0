import ArgumentParser
import Corpus
import Communication
import Foundation
import Model
import Tensors
import Training

/// `elle train --teacher CKPT --kd-steps N ...`: knowledge inheritance (docs/KI.md). The loss
/// is (1 - a_t) CE + a_t tau^2 KL(p_teacher(tau) || p_student(tau)).
struct TrainKIOptions: ParsableArguments {
    @Option(help: "Knowledge inheritance: a trained teacher checkpoint (file or run folder) of the same architecture and tokenizer, run forward only on every rank's batches. With --resume: where to find it if moved (it must be the same teacher).")
    var teacher: String?
    @Option(help: "Knowledge inheritance from a top-K teacher cache (`elle teacher-cache`) instead of a live teacher (GPT only).")
    var kdCache: String?
    @Option(help: "T_kd: updates with distillation (default: all of --steps).") var kdSteps: Int?
    @Option(help: "Distillation temperature tau.") var kdTemperature: Float = DistillationOptions.defaults.temperature
    @Option(help: "a_t schedule: linear (1 - t/T_kd), constant (--kd-weight until T_kd) or switch (1 until T_kd).")
    var kdSchedule: DistillationSchedule = DistillationOptions.defaults.schedule
    @Option(help: "End distillation after --kd-steps only (steps), or also at the first validation where the student's loss is at or below the teacher's (teacher).")
    var kdUntil: DistillationStop = DistillationOptions.defaults.until
    @Option(help: "Begin distillation at the first update (first), or at the first validation where the teacher's validation loss is further below the student's than the student moved since the previous validation (ahead).")
    var kdStart: DistillationStart = DistillationOptions.defaults.start
    @Option(help: "a_t of the constant schedule.") var kdWeight: Float = 0.5
    @Option(help: "Keep only the teacher's K most probable tokens per position (renormalized); default: the full distribution.")
    var kdTopK: Int?

    var isSet: Bool { teacher != nil || kdCache != nil }

    func validate() throws {
        if teacher != nil && kdCache != nil { throw ValidationError("--teacher and --kd-cache are alternatives: give one") }
        if !isSet && (kdSteps != nil || kdTopK != nil) {
            throw ValidationError("--kd-* options need --teacher CKPT or --kd-cache FILE")
        }
        if let kdSteps, kdSteps < 0 { throw ValidationError("--kd-steps must not be negative (got \(kdSteps))") }
        if !(kdTemperature > 0 && kdTemperature.isFinite) { throw ValidationError("--kd-temperature must be positive (got \(kdTemperature))") }
        if !(kdWeight >= 0 && kdWeight <= 1) { throw ValidationError("--kd-weight must be in [0, 1] (got \(kdWeight))") }
        if let kdTopK, kdTopK < 1 { throw ValidationError("--kd-top-k must be at least 1 (got \(kdTopK))") }
        if kdCache != nil && kdTopK != nil { throw ValidationError("--kd-top-k comes from the cache; leave it out with --kd-cache") }
    }

    /// The run's distillation options (nil without a teacher).
    func options(steps: Int) -> DistillationOptions? {
        guard let source = teacher ?? kdCache else { return nil }
        var kd = DistillationOptions(teacher: source, steps: kdSteps ?? steps, temperature: kdTemperature, schedule: kdSchedule, until: kdUntil, start: kdStart)
        kd.weight = kdWeight
        kd.topK = kdTopK
        kd.cache = kdCache
        return kd
    }
}

extension DistillationSchedule: ExpressibleByArgument {}
extension DistillationStop: ExpressibleByArgument {}
extension DistillationStart: ExpressibleByArgument {}

/// `elle teacher-cache`: the teacher's top-K logits at every position of a domain's training
/// windows, for `elle train --kd-cache`.
struct TeacherCacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teacher-cache",
        abstract: "Cache a GPT teacher's top-K logits over a domain's training windows for knowledge inheritance.",
        discussion: """
            Runs the teacher forward over every window of --seq tokens of the training data \
            (as `elle train` cuts it) and writes its K largest logits per position (format in \
            docs/KI.md). `elle train --kd-cache FILE` with the same data and --seq then reads \
            the teacher's distribution from it instead of running the teacher. A BERT teacher \
            cannot be cached: its masks change at every update.
            """)

    @Option(help: "Teacher checkpoint (file or run folder).") var teacher: String
    @Option(help: "Training data: a prepared folder or raw text, as for `elle train`.") var data: String
    @Option(help: "Domain of a prepared --data folder (default: its only domain).") var domain: String?
    @Option(help: "Tokens per sequence (must be the training run's --seq).") var seq: Int = 128
    @Option(help: "Most probable tokens kept per position.") var topK: Int = 10
    @Option(help: "Windows per teacher forward pass.") var batch: Int = 16
    @Option(help: "Output file.") var out: String
    @OptionGroup var compute: ComputeOptions

    func run() throws {
        _ = Runtime.configureThreads(compute.threads)
        let loaded = try TrainingData(path: data, domain: domain, validFraction: 0.05)
        let teacher = try Teacher.load(teacher, communicator: SingleProcess())
        teacher.model.precision = compute.precision ?? .fp32  // use the training run's precision
        Runtime.announce(precision: teacher.model.precision)
        guard teacher.model.config.vocab == loaded.tokenizer.vocabularySize else {
            throw CommandError("the teacher's vocabulary (\(teacher.model.config.vocab)) is not the data's tokenizer's (\(loaded.tokenizer.vocabularySize))")
        }
        let start = Date()
        var last = Date()
        let header = try TeacherCache.build(teacher: teacher, train: loaded.train, seq: seq, topK: topK, batch: batch, to: out) { done, total in
            if Date().timeIntervalSince(last) > 10 || done == total {
                print(String(format: "%d/%d windows (%.0f s)", done, total, Date().timeIntervalSince(start)))
                Runtime.flush()
                last = Date()
            }
        }
        print(String(format: "wrote %@: %d windows x %d positions x top %d from %@ (%.3e teacher FLOPs)",
                     out, header.windows, header.seq, header.topK, header.teacher, header.teacherFLOPs))
    }
}
