import Communication
import Corpus
import Foundation
import Model
import Tensors

/// Knowledge inheritance inside `Trainer.update`: the distillation micro-batch and the teacher
/// (live, or its top-K cache) it reads.
extension Trainer {
    /// Forward and backward of one micro-batch (in `inputs`, `targets`) under the KI loss
    /// (1 - a) CE + a tau^2 KL(p_T(tau) || p_S(tau)): the student's forward pass, the teacher's
    /// rows for the same inputs (live, or from the cache by window), then the student's backward
    /// from the mixed logit gradient.
    func distill(weight: Float, batch b: Int, seq t: Int, dropoutSeed: UInt64) throws -> DistillationLoss.Value {
        guard let kd = options.distillation else { preconditionFailure("distill without distillation options") }
        model.forward(tokens: inputs.pointer, targets: targets.pointer, batch: b, seq: t, dropoutSeed: dropoutSeed)
        let rows: TeacherRows
        if let cache = teacherCache {
            guard windowsFilled else {
                throw ConfigError(field: "distillation.cache", message: "a teacher cache needs the run's own loader (plain elle train); this update's batches come from elsewhere")
            }
            let k = cache.header.topK, count = b * t * k
            if cachedIds.count < count {
                cachedIds = Buffer(count: count)
                cachedLogits = FloatBuffer(count: count)
            }
            cache.rows(windows: windows.pointer, count: b, ids: cachedIds.pointer, logits: cachedLogits.pointer)
            rows = .topK(ids: UnsafePointer(cachedIds.pointer), logits: UnsafePointer(cachedLogits.pointer), k: k)
        } else if let teacher {
            rows = teacher.predict(tokens: inputs.pointer, targets: targets.pointer, batch: b, seq: t, topK: kd.topK)
            precondition(teacher.model.config.architecture == .gpt || teacher.model.logitRowCount == model.logitRowCount,
                         "teacher and student predict different rows")
        } else {
            throw ConfigError(field: "distillation.teacher", message: "update \(step + 1) distills but no teacher or teacher cache is attached")
        }
        var value: DistillationLoss.Value?
        let student = model
        model.backward(headGradient: { [distillationLoss] logits in
            value = distillationLoss.apply(logits: logits, targets: student.logitRowTargets, rows: student.logitRowCount,
                                           vocab: student.config.vocab, teacher: rows, temperature: kd.temperature,
                                           weight: weight, writeGradient: true)
        }, observer: synchronizer)
        return value!
    }

    /// Attaches the live teacher of `options.distillation` after checking it fits the student
    /// (architecture, vocabulary, context) and, on resume, that it is the teacher the run started
    /// with (its parameters' XXH64 is saved in the options).
    public func attachTeacher(_ teacher: Teacher) throws {
        guard var kd = options.distillation else {
            throw ConfigError(field: "distillation", message: "a teacher was given but the run has no distillation options")
        }
        try teacher.check(student: model.config, seq: options.seq)
        if let saved = kd.teacherHash, saved != teacher.hashString {
            throw ConfigError(field: "distillation.teacher",
                              message: "\(teacher.source) has parameters XXH64 \(teacher.hashString) but the run was started with a teacher of XXH64 \(saved)")
        }
        kd.teacherHash = teacher.hashString
        options.distillation = kd
        teacher.model.precision = options.matrixPrecision  // its forward passes in the run's precision
        self.teacher = teacher
        teacherCache = nil
    }

    /// Attaches a top-K teacher cache built for this run's train stream, sequence length and
    /// vocabulary (GPT students: BERT masks change at every update).
    public func attachTeacherCache(_ cache: TeacherCache) throws {
        guard var kd = options.distillation else {
            throw ConfigError(field: "distillation", message: "a teacher cache was given but the run has no distillation options")
        }
        guard model.config.architecture == .gpt else {
            throw ConfigError(field: "distillation.cache", message: "a teacher cache fits a GPT only: BERT's masks are drawn anew at every update, so a BERT run uses the live teacher")
        }
        try cache.check(train: loader.tokens, seq: options.seq, vocab: model.config.vocab)
        if let saved = kd.teacherHash, saved != cache.header.teacherXXH64 {
            throw ConfigError(field: "distillation.cache",
                              message: "\(cache.path) holds the teacher of XXH64 \(cache.header.teacherXXH64) but the run was started with \(saved)")
        }
        kd.teacherHash = cache.header.teacherXXH64
        kd.topK = cache.header.topK
        options.distillation = kd
        teacherCache = cache
        teacher = nil
    }

    /// The bar of the `.teacher` and `.ahead` rules (docs/KI.md "Defaults"): the teacher's
    /// validation loss on `stream` (with `prompt`, as the student is validated), measured once,
    /// and for `.ahead` the student's own first one; a resumed run keeps the saved values. With a
    /// top-K cache the live teacher its header names is loaded for this one measurement.
    /// Collective.
    public func measureTeacherValidation(_ stream: TokenStream? = nil, prompt: Int32? = nil, log: (String) -> Void) throws {
        guard var kd = options.distillation, kd.needsValidation, kd.teacherValidLoss == nil else { return }
        var source = teacher
        if source == nil, let cache = teacherCache {
            do { source = try Teacher.load(cache.header.teacher, communicator: communicator) } catch {
                throw ConfigError(field: "distillation.until",
                                  message: "starting and ending distillation by validation needs the teacher's validation loss, but the cache's teacher \(cache.header.teacher) cannot be read (\(error)); give --kd-until steps --kd-start first")
            }
            guard source!.hashString == cache.header.teacherXXH64 else {
                throw ConfigError(field: "distillation.until",
                                  message: "\(cache.header.teacher) is not the teacher \(cache.path) was built from (XXH64 \(source!.hashString), the cache says \(cache.header.teacherXXH64)); give --kd-until steps --kd-start first")
            }
            source!.model.precision = options.matrixPrecision
        }
        guard let source else { return }
        let validation = stream ?? validTokens
        guard options.evalEvery > 0 || stream != nil,
              let loss = try evaluate(validation, batches: options.evalBatches, prompt: prompt, using: source.model) else {
            kd.until = .steps
            kd.start = .first
            options.distillation = kd
            log("  distillation runs from the first update for its --kd-steps: starting and ending it by validation needs validations (--eval-every > 0 and validation data)")
            return
        }
        kd.teacherValidLoss = loss
        if kd.start == .ahead && kd.studentValidLoss == nil {
            kd.studentValidLoss = try evaluate(validation, batches: options.evalBatches, prompt: prompt)
        }
        options.distillation = kd
        log(String(format: "  teacher's validation loss %.4f (perplexity %.2f)%@%@", loss, exp(Double(loss)),
                   kd.start == .ahead ? String(format: "; distillation starts at the first validation where the teacher is further ahead of the student (%.4f now) than the student moved since the previous one", kd.studentValidLoss ?? .nan) : "",
                   kd.until == .teacher ? "; it ends once the student's validation loss is at or below the teacher's" : ""))
    }

    /// The `.ahead` and `.teacher` rules at a validation with the student's loss `validLoss`:
    /// rank 0 decides (`DistillationOptions.decide`) and broadcasts; every rank records it.
    /// Returns what happened. Collective.
    public func applyTeacherRule(validLoss: Float) throws -> DistillationEvent {
        guard var kd = options.distillation, kd.watchesTeacher(atStep: step), kd.teacherValidLoss != nil else { return .none }
        let code = Buffer<Int64>(count: 1)
        code[0] = communicator.isRoot ? kd.decide(validLoss: validLoss, atStep: step).rawValue : 0
        try communicator.broadcast(code, label: "distillation decision after update \(step)")
        guard let event = DistillationEvent(rawValue: code[0]) else {
            throw JobError("rank 0 sent an unknown distillation decision \(code[0]) after update \(step)")
        }
        kd.apply(event, validLoss: validLoss, atStep: step)
        options.distillation = kd
        return event
    }

    /// Teacher FLOPs spent so far on all ranks: forward passes of the updates with a_t > 0 (or,
    /// with a cache, the forward passes that built it). 0 without KI.
    public var teacherFLOPs: Double {
        guard let kd = options.distillation else { return 0 }
        if let teacherCache { return teacherCache.header.teacherFLOPs }
        guard let teacher else { return 0 }
        let tokensPerUpdate = Double(options.batch * options.seq * options.accumulation * communicator.size)
        return Double(kd.teacherUpdates(before: step)) * tokensPerUpdate * teacher.forwardFLOPsPerToken(seq: options.seq)
    }
}
