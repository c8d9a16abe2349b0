import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// Knowledge inheritance (issue 13, spec section 6): the loss (1 - a) CE + a tau^2 KL(p_T || p_S)
/// and its gradient, the a_t schedules, the trainer's use of a live teacher or a top-K cache.
final class DistillationTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    // MARK: reference

    /// The KI loss in Float64, straight from the definition: mean over rows with a target of
    /// (1 - a)(lse(z) - z_y) + a tau^2 sum_j q_j (log q_j - log softmax(z / tau)_j), where q is
    /// softmax(teacher / tau), or with `topK` the softmax of the teacher's K largest logits / tau.
    static func referenceLoss(student: [Float], teacher: [Float], targets: [Int32], vocab v: Int,
                              tau: Double, a: Double, topK: Int? = nil) -> Double {
        var total = 0.0, counted = 0
        for row in 0..<targets.count where targets[row] >= 0 {
            let z = (0..<v).map { Double(student[row * v + $0]) }
            let y = (0..<v).map { Double(teacher[row * v + $0]) }
            func logSoftmax(_ x: [Double]) -> [Double] {
                let m = x.max()!
                let lse = m + log(x.reduce(0) { $0 + exp($1 - m) })
                return x.map { $0 - lse }
            }
            let ce = -logSoftmax(z)[Int(targets[row])]
            let logP = logSoftmax(z.map { $0 / tau })
            var kl = 0.0
            if let k = topK {
                let kept = (0..<v).sorted { y[$0] != y[$1] ? y[$0] > y[$1] : $0 < $1 }.prefix(k)
                let logQ = logSoftmax(kept.map { y[$0] / tau })
                for (i, j) in kept.enumerated() { kl += exp(logQ[i]) * (logQ[i] - logP[j]) }
            } else {
                let logQ = logSoftmax(y.map { $0 / tau })
                for j in 0..<v { kl += exp(logQ[j]) * (logQ[j] - logP[j]) }
            }
            total += (1 - a) * ce + a * tau * tau * kl
            counted += 1
        }
        return total / Double(counted)
    }

    static func copied(_ buffer: FloatBuffer) -> FloatBuffer {
        let copy = FloatBuffer(count: buffer.count)
        copy.copy(from: buffer)
        return copy
    }

    static func randomLogits(_ count: Int, seed: UInt64, scale: Float = 3) -> [Float] {
        var rng = Xoshiro256(seed: seed)
        return (0..<count).map { _ in (2 * rng.nextFloat() - 1) * scale }
    }

    // MARK: the loss and its gradient

    /// d(loss)/d(student logits) against central differences of the Float64 reference, for the
    /// full teacher and its top 4, at a = 0.3 and 1 (tau 2) and a = 0: every logit of 6 rows of a
    /// vocabulary of 37 (not a multiple of the SIMD width), one row without a target. The loss
    /// value matches the reference to 1e-5 relative.
    func testGradientWithRespectToLogitsMatchesFiniteDifferences() {
        let rows = 6, v = 37, tau: Float = 2
        let teacher = Self.randomLogits(rows * v, seed: 2)
        var targets = randomTokens(rows, vocab: v, seed: 3)
        targets[4] = -1
        let loss = DistillationLoss()
        for topK in [nil, 4] as [Int?] {
            for a: Float in [0, 0.3, 1] {
                var student = Self.randomLogits(rows * v, seed: 1)
                let grad = Buffer<Float>(count: rows * v)
                grad.pointer.update(from: student, count: rows * v)
                let ids = Buffer<Int32>(count: rows * 4), values = Buffer<Float>(count: rows * 4)
                let value: DistillationLoss.Value = teacher.withUnsafeBufferPointer { t in
                    let rowsOfTeacher: TeacherRows
                    if let topK {
                        Training.topK(t.baseAddress!, rows: rows, vocab: v, k: topK, ids: ids.pointer, values: values.pointer)
                        rowsOfTeacher = .topK(ids: ids.pointer, logits: values.pointer, k: topK)
                    } else {
                        rowsOfTeacher = .dense(t.baseAddress!)
                    }
                    return targets.withUnsafeBufferPointer {
                        loss.apply(logits: grad.pointer, targets: $0.baseAddress!, rows: rows, vocab: v, teacher: rowsOfTeacher,
                                   temperature: tau, weight: a, writeGradient: true)
                    }
                }
                let reference = Self.referenceLoss(student: student, teacher: teacher, targets: targets, vocab: v,
                                                   tau: Double(tau), a: Double(a), topK: topK)
                XCTAssertEqual(value.loss, reference, accuracy: 1e-5 * abs(reference), "top-K \(String(describing: topK)), a \(a)")
                XCTAssertEqual(value.rows, rows - 1)
                let mismatches = student.withUnsafeMutableBufferPointer { s in
                    FiniteDifference.check("logits", values: s.baseAddress!, analytic: grad.pointer, count: rows * v,
                                           samples: rows * v, seed: 9) {
                        Self.referenceLoss(student: Array(s), teacher: teacher, targets: targets, vocab: v,
                                           tau: Double(tau), a: Double(a), topK: topK)
                    }
                }
                XCTAssertEqual(mismatches.count, 0, "top-K \(String(describing: topK)), a \(a): \(mismatches.prefix(5))")
                for j in 0..<v { XCTAssertEqual(grad[4 * v + j], 0, "a row without a target has no gradient") }
                // The worst disagreement, for the record.
                var worst = 0.0
                student.withUnsafeMutableBufferPointer { s in
                    for i in 0..<(rows * v) {
                        let saved = s[i]
                        s[i] = saved + FiniteDifference.step
                        let plus = Self.referenceLoss(student: Array(s), teacher: teacher, targets: targets, vocab: v, tau: Double(tau), a: Double(a), topK: topK)
                        s[i] = saved - FiniteDifference.step
                        let minus = Self.referenceLoss(student: Array(s), teacher: teacher, targets: targets, vocab: v, tau: Double(tau), a: Double(a), topK: topK)
                        s[i] = saved
                        let fd = (plus - minus) / (Double(saved + FiniteDifference.step) - Double(saved - FiniteDifference.step))
                        worst = max(worst, abs(fd - Double(grad[i])))
                    }
                }
                print(String(format: "distillation gradient wrt logits, top-K %@, a %.1f: loss %.7f (Float64 reference %.7f), %d logits, worst |fd - analytic| %.2e",
                             topK.map { "\($0)" } ?? "all", a, value.loss, reference, rows * v, worst))
            }
        }
    }

    /// The gradient through a whole tiny GPT (2 layers, width 16, vocab 32, sequence 8, with a
    /// 1-layer width-8 teacher): every tensor at 24 coordinates against central differences of
    /// the Float64 loss recomputed from the logits (TESTING.md tolerances); a = 0.6, tau = 2.
    func testGradientThroughTheModelMatchesFiniteDifferences() throws {
        let config = Tiny.config()
        let student = try GPT(config: config, seed: 5)
        let teacherModel = try GPT(config: ModelConfig(layers: 1, width: 8, heads: 2, vocab: 32, context: 8), seed: 6)
        let teacher = Teacher(model: teacherModel, source: "test")
        try teacher.check(student: config, seq: 8)
        let b = 2, t = 8, v = config.vocab
        let tokens = randomTokens(b * t, vocab: v, seed: 7), targets = randomTokens(b * t, vocab: v, seed: 8)
        let rows = teacher.predict(tokens: tokens, targets: targets, batch: b, seq: t, topK: nil)
        guard case .dense(let teacherLogits) = rows else { return XCTFail("expected dense teacher rows") }
        let teacherCopy = Array(UnsafeBufferPointer(start: teacherLogits, count: b * t * v))
        let a: Float = 0.6, tau: Float = 2
        let loss = DistillationLoss()
        student.zeroGradients()
        student.forward(tokens: tokens, targets: targets, batch: b, seq: t)
        var value: DistillationLoss.Value?
        teacherCopy.withUnsafeBufferPointer { tp in
            student.backward(headGradient: { logits in
                value = loss.apply(logits: logits, targets: student.logitRowTargets, rows: student.logitRowCount, vocab: v,
                                   teacher: .dense(tp.baseAddress!), temperature: tau, weight: a, writeGradient: true)
            })
        }
        func modelLoss() -> Double {
            student.forward(tokens: tokens, targets: targets, batch: b, seq: t)
            let logits = Array(UnsafeBufferPointer(start: student.logits, count: b * t * v))
            return Self.referenceLoss(student: logits, teacher: teacherCopy, targets: targets, vocab: v, tau: Double(tau), a: Double(a))
        }
        XCTAssertEqual(value!.loss, modelLoss(), accuracy: 1e-5 * value!.loss)
        var mismatches: [GradientMismatch] = []
        for (i, spec) in student.layout.tensors.enumerated() {
            mismatches += FiniteDifference.check(spec.name, values: student.parameters.pointer + spec.offset,
                                                 analytic: student.gradients.pointer + spec.offset, count: spec.count,
                                                 seed: UInt64(100 + i), loss: modelLoss)
        }
        XCTAssertEqual(mismatches.count, 0, "\(mismatches.prefix(8))")
        print("distillation gradient through a tiny GPT: \(student.layout.tensors.count) tensors x up to 24 coordinates, \(mismatches.count) outside tolerance; loss \(value!.loss)")
    }

    /// The loss and gradient have the same bits for 1 and 3 threads.
    func testBitIdenticalForAnyThreadCount() {
        let rows = 40, v = 300
        let teacher = Self.randomLogits(rows * v, seed: 31), student = Self.randomLogits(rows * v, seed: 32)
        let targets = randomTokens(rows, vocab: v, seed: 33)
        var results: [[Float]] = []
        var losses: [Double] = []
        for threads in [1, 3] {
            Parallel.configure(threads: threads)
            var g = student
            let value = g.withUnsafeMutableBufferPointer { gp in
                loss(gp.baseAddress!, teacher, targets, rows, v)
            }
            results.append(g)
            losses.append(value)
        }
        XCTAssertEqual(losses[0].bitPattern, losses[1].bitPattern)
        XCTAssertTrue(results[0].map(\.bitPattern) == results[1].map(\.bitPattern))
        func loss(_ g: UnsafeMutablePointer<Float>, _ t: [Float], _ y: [Int32], _ n: Int, _ v: Int) -> Double {
            t.withUnsafeBufferPointer { tp in
                DistillationLoss().apply(logits: g, targets: y, rows: n, vocab: v, teacher: .dense(tp.baseAddress!),
                                         temperature: 2, weight: 0.4, writeGradient: true).loss
            }
        }
    }

    /// With the teacher equal to the student (a copy of its parameters, same inputs) the KL term
    /// is exactly 0 and, at a = 1, so is every logit's gradient: for a GPT (every position) and a
    /// BERT (masked positions only, the same masked input for both).
    func testTeacherEqualToStudentGivesZeroKL() throws {
        let loss = DistillationLoss()
        // GPT
        let gpt = try GPT(config: Tiny.config(), seed: 11)
        let twin = Teacher(model: try GPT(config: gpt.config, parameters: Self.copied(gpt.parameters)), source: "twin")
        let tokens = randomTokens(16, vocab: 32, seed: 12), targets = randomTokens(16, vocab: 32, seed: 13)
        gpt.forward(tokens: tokens, targets: targets, batch: 2, seq: 8)
        let rows = twin.predict(tokens: tokens, targets: targets, batch: 2, seq: 8, topK: nil)
        let value = loss.apply(logits: gpt.logits, targets: gpt.logitRowTargets, rows: gpt.logitRowCount, vocab: 32,
                               teacher: rows, temperature: 2, weight: 1, writeGradient: true)
        XCTAssertEqual(value.kl, 0)
        XCTAssertEqual(value.loss, 0)
        print("teacher = student: GPT KL \(value.kl) over \(value.rows) positions")
        for i in 0..<(16 * 32) { XCTAssertEqual(gpt.logits[i], 0, accuracy: 1e-9) }

        // BERT: masked sequences, the teacher sees the same masked input and predicts the same rows.
        let maskedLM = MaskedLM(beginToken: 259, maskToken: 258, padToken: 257, ordinaryTokens: 256)
        var config = ModelConfig(architecture: .bert, layers: 2, width: 32, heads: 2, vocab: 260, context: 32)
        config.padToken = 257
        let bert = try BERT(config: config, seed: 14)
        let bertTwin = Teacher(model: try BERT(config: config, parameters: Self.copied(bert.parameters)), source: "twin")
        try bertTwin.check(student: config, seq: 32)
        var input = randomTokens(4 * 32, vocab: 256, seed: 15), target = input
        input.withUnsafeMutableBufferPointer { i in
            target.withUnsafeMutableBufferPointer { t in
                maskedLM.makeSequences(tokens: i.baseAddress!, targets: t.baseAddress!, batch: 4, seq: 32, key: 16)
            }
        }
        bert.forward(tokens: input, targets: target, batch: 4, seq: 32)
        let masked = target.filter { $0 >= 0 }.count
        XCTAssertGreaterThan(masked, 0)
        XCTAssertEqual(bert.logitRowCount, masked, "BERT's logits exist at the masked positions only")
        let bertRows = bertTwin.predict(tokens: input, targets: target, batch: 4, seq: 32, topK: nil)
        XCTAssertEqual(bertTwin.model.logitRowCount, masked)
        let bertValue = loss.apply(logits: bert.logits, targets: bert.logitRowTargets, rows: bert.logitRowCount, vocab: 260,
                                   teacher: bertRows, temperature: 2, weight: 1, writeGradient: false)
        XCTAssertEqual(bertValue.kl, 0)
        XCTAssertEqual(bertValue.rows, masked)
        XCTAssertEqual(bertValue.crossEntropy, bert.lastLoss, accuracy: 1e-5 * bert.lastLoss)
        print("teacher = student: BERT KL \(bertValue.kl) over \(bertValue.rows) masked positions of 128")

        // A different teacher gives a positive KL.
        let other = Teacher(model: try GPT(config: gpt.config, seed: 99), source: "other")
        gpt.forward(tokens: tokens, targets: targets, batch: 2, seq: 8)
        let otherRows = other.predict(tokens: tokens, targets: targets, batch: 2, seq: 8, topK: nil)
        XCTAssertGreaterThan(loss.apply(logits: gpt.logits, targets: gpt.logitRowTargets, rows: 16, vocab: 32,
                                        teacher: otherRows, temperature: 2, weight: 1, writeGradient: false).kl, 1e-6)
    }

    /// The `.teacher` rule: a_t = 0 from the update at which the student passed the teacher
    /// (and its teacher updates stop counting); only `.teacher` runs watch validations; options
    /// saved before the rule existed decode as `.steps`.
    func testPassingTheTeacherEndsDistillation() throws {
        var kd = DistillationOptions(teacher: "t", steps: 8, temperature: 2, schedule: .linear, until: .teacher)
        XCTAssertTrue(kd.watchesTeacher(atStep: 3))
        kd.passedTeacherAtStep = 4
        XCTAssertEqual((0..<10).map { kd.weight(atStep: $0) }, [1, 0.875, 0.75, 0.625, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(kd.teacherUpdates(before: 100), 4)
        XCTAssertFalse(kd.watchesTeacher(atStep: 5), "decided once")
        kd.passedTeacherAtStep = nil
        XCTAssertFalse(kd.watchesTeacher(atStep: 8), "distillation over anyway")
        kd.until = .steps
        XCTAssertFalse(kd.watchesTeacher(atStep: 3))

        let saved = #"{"teacher":"t","steps":8,"temperature":2,"schedule":"linear","weight":0.5,"startStep":0}"#
        let old = try JSONDecoder().decode(DistillationOptions.self, from: Data(saved.utf8))
        XCTAssertEqual(old.until, .steps)
        XCTAssertNil(old.passedTeacherAtStep)
        var rule = old
        rule.until = .teacher
        rule.teacherValidLoss = 5.25
        rule.passedTeacherAtStep = 6
        XCTAssertEqual(try JSONDecoder().decode(DistillationOptions.self, from: try JSONEncoder().encode(rule)), rule)
    }

    /// The `.ahead` gate: no distillation until a validation finds the teacher further ahead
    /// than the student moved since the previous one, then linear from 1 at the gate to 0 at
    /// T_kd; a student that passes the teacher first never distills.
    func testDistillationStartsOnceTheTeacherIsFarEnoughAhead() {
        var kd = DistillationOptions(teacher: "t", steps: 10, temperature: 1, schedule: .linear, until: .teacher, start: .ahead)
        kd.teacherValidLoss = 5
        kd.studentValidLoss = 8.3
        XCTAssertEqual((0..<3).map { kd.weight(atStep: $0) }, [0, 0, 0])
        // 6.6 - 5 = 1.6 ahead, but the student moved 1.7 by itself: wait.
        XCTAssertEqual(kd.decide(validLoss: 6.6, atStep: 2), .none)
        kd.apply(.none, validLoss: 6.6, atStep: 2)
        XCTAssertEqual(kd.studentValidLoss, 6.6)
        // 6.4 - 5 = 1.4 ahead against 0.2 moved: start.
        XCTAssertEqual(kd.decide(validLoss: 6.4, atStep: 4), .started)
        kd.apply(.started, validLoss: 6.4, atStep: 4)
        for (got, want) in zip((3..<11).map { kd.weight(atStep: $0) }, [0, 1, 5.0 / 6, 4.0 / 6, 0.5, 2.0 / 6, 1.0 / 6, 0] as [Float]) {
            XCTAssertEqual(got, want, accuracy: 1e-6)
        }
        XCTAssertEqual(kd.teacherUpdates(before: 100), 6)
        XCTAssertEqual(kd.decide(validLoss: 4.9, atStep: 6), .passed)
        var weak = DistillationOptions(teacher: "t", steps: 10, until: .teacher, start: .ahead)
        weak.teacherValidLoss = 6.5
        weak.studentValidLoss = 8.3
        XCTAssertEqual(weak.decide(validLoss: 6.6, atStep: 2), .none)
        weak.apply(.none, validLoss: 6.6, atStep: 2)
        XCTAssertEqual(weak.decide(validLoss: 6.4, atStep: 4), .passed, "passed before it was worth starting")
        weak.apply(.passed, validLoss: 6.4, atStep: 4)
        XCTAssertEqual(weak.teacherUpdates(before: 100), 0, "never distills: plain training")
        XCTAssertFalse(weak.watchesTeacher(atStep: 5))
    }

    /// a_t of each schedule: linear max(0, 1 - t/T), constant `weight` until T, switch 1 until
    /// T; 0 from T on and before the start; counted teacher updates.
    func testSchedules() {
        var kd = DistillationOptions(teacher: "t", steps: 8)
        XCTAssertEqual((0..<10).map { kd.weight(atStep: $0) }, [1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0, 0])
        XCTAssertEqual(kd.teacherUpdates(before: 100), 8)
        print("a_t linear (T_kd 8), updates 0-9: \((0..<10).map { kd.weight(atStep: $0) })")
        XCTAssertEqual(kd.teacherUpdates(before: 3), 3)
        kd.schedule = .constant
        kd.weight = 0.5
        XCTAssertEqual((0..<10).map { kd.weight(atStep: $0) }, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0, 0])
        kd.weight = 0
        XCTAssertEqual(kd.teacherUpdates(before: 100), 0, "a_t = 0 never runs the teacher")
        kd.schedule = .switch
        XCTAssertEqual((0..<10).map { kd.weight(atStep: $0) }, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        kd.schedule = .linear
        kd.startStep = 100  // a lifelong stage's KI starting at update 100
        kd.steps = 4
        XCTAssertEqual([99, 100, 101, 102, 103, 104].map { kd.weight(atStep: $0) }, [0, 1, 0.75, 0.5, 0.25, 0])
        XCTAssertEqual(kd.teacherUpdates(before: 102), 2)
        kd.steps = 0
        XCTAssertEqual(kd.weight(atStep: 100), 0)
        kd.temperature = 0
        XCTAssertThrowsError(try kd.validate())
    }

    /// top-K picks the K largest (ties: lower index first) in descending order.
    func testTopKSelection() {
        let v = 53, rows = 3, k = 7
        var x = Self.randomLogits(rows * v, seed: 21)
        x[5] = 9; x[17] = 9; x[40] = 9  // ties in row 0
        let ids = Buffer<Int32>(count: rows * k), values = Buffer<Float>(count: rows * k)
        Training.topK(x, rows: rows, vocab: v, k: k, ids: ids.pointer, values: values.pointer)
        for row in 0..<rows {
            let expected = (0..<v).sorted { x[row * v + $0] != x[row * v + $1] ? x[row * v + $0] > x[row * v + $1] : $0 < $1 }.prefix(k)
            XCTAssertEqual((0..<k).map { Int(ids[row * k + $0]) }, Array(expected), "row \(row)")
            XCTAssertEqual((0..<k).map { values[row * k + $0] }, expected.map { x[row * v + $0] })
        }
    }

    // MARK: the trainer

    static let corpus = try! TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())

    func makeOptions(steps: Int, kd: DistillationOptions?) -> TrainingOptions {
        var options = TrainingOptions(batch: 3, seq: 32, steps: steps,
                                      schedule: LearningRateSchedule(kind: .cosine, peak: 3e-3, warmup: 2, total: steps, minimum: 3e-4),
                                      dataPath: sampleDataPath())
        options.accumulation = 2
        options.seed = 5
        options.distillation = kd
        return options
    }

    func makeStudent() throws -> GPT {
        try GPT(config: ModelConfig(layers: 2, width: 32, heads: 2, vocab: 257, context: 32, dropout: 0.1), seed: 3)
    }

    func makeTeacher() throws -> Teacher {
        Teacher(model: try GPT(config: ModelConfig(layers: 1, width: 16, heads: 2, vocab: 257, context: 32), seed: 4), source: "tiny teacher")
    }

    /// A run whose a_t is 0 at every update (constant schedule with weight 0; and a linear run
    /// once past T_kd is the same code path) is bit for bit the plain run: losses and final
    /// parameters, with dropout and accumulation on; the teacher is never run (0 teacher FLOPs).
    /// A run with a_t > 0 differs.
    func testZeroWeightIsBitIdenticalToPlainTraining() throws {
        let steps = 6
        let plain = try Trainer(model: try makeStudent(), options: makeOptions(steps: steps, kd: nil),
                                train: Self.corpus.train, valid: Self.corpus.valid)
        var kd = DistillationOptions(teacher: "tiny teacher", steps: steps, schedule: .constant)
        kd.weight = 0
        let zero = try Trainer(model: try makeStudent(), options: makeOptions(steps: steps, kd: kd),
                               train: Self.corpus.train, valid: Self.corpus.valid)
        try zero.attachTeacher(try makeTeacher())
        kd.weight = 0.5
        let mixed = try Trainer(model: try makeStudent(), options: makeOptions(steps: steps, kd: kd),
                                train: Self.corpus.train, valid: Self.corpus.valid)
        try mixed.attachTeacher(try makeTeacher())
        for _ in 0..<steps {
            let p = try plain.trainStep(), z = try zero.trainStep(), m = try mixed.trainStep()
            XCTAssertEqual(p.loss.bitPattern, z.loss.bitPattern)
            XCTAssertEqual(z.distillationWeight, 0)
            XCTAssertEqual(m.distillationWeight, 0.5)
            XCTAssertEqual(m.crossEntropy.isFinite, true)
        }
        XCTAssertTrue(bitIdentical(plain.model.parameters.pointer, zero.model.parameters.pointer, plain.model.parameterCount))
        print(String(format: "a_t = 0: %d updates, parameters xxh64 %016llx plain, %016llx KI (a_t = 0), %016llx KI (a_t = 0.5)", steps,
                     XXH64.hash(plain.model.parameters), XXH64.hash(zero.model.parameters), XXH64.hash(mixed.model.parameters)))
        XCTAssertFalse(bitIdentical(plain.model.parameters.pointer, mixed.model.parameters.pointer, plain.model.parameterCount))
        XCTAssertEqual(zero.teacherFLOPs, 0)
        // 6 updates x 2 micro-batches x 3 x 32 tokens x (2 N + 4 L D T) of the 1/16 teacher.
        let teacher = try makeTeacher()
        XCTAssertEqual(mixed.teacherFLOPs, Double(steps * 2 * 3 * 32) * (2 * Double(teacher.model.parameterCount) + 4 * 1 * 16 * 32))
    }

    /// The top-K cache (built from the teacher over every window, written, read back and
    /// verified) gives the same loss as the live teacher restricted to its top K: one batch's
    /// loss value bit for bit, and 4 updates of training the same losses and parameters. A
    /// corrupted cache, or one for other data, is refused naming the file.
    func testCachedTopKMatchesLiveTopK() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = (folder as NSString).appendingPathComponent("teacher.kd")
        let teacher = try makeTeacher()
        // The first 8000 tokens keep the cache (every window, 10 per position) quick to build.
        let small = Buffer<Int32>(count: 8000)
        small.pointer.update(from: Self.corpus.train.pointer, count: 8000)
        let train = TokenStream(small)
        let header = try TeacherCache.build(teacher: teacher, train: train, seq: 32, topK: 10, batch: 7, to: path)
        XCTAssertEqual(header.windows, train.windowCount(seq: 32))
        let cache = try TeacherCache(path: path)
        XCTAssertEqual(cache.header, header)

        // One batch: windows 3, 0, 201 through both paths on the same student logits.
        let windows: [Int32] = [3, 0, 201]
        let inputs = Buffer<Int32>(count: 3 * 32), targets = Buffer<Int32>(count: 3 * 32)
        for (i, w) in windows.enumerated() {
            train.copyWindow(Int(w), seq: 32, inputs: inputs.pointer + i * 32, targets: targets.pointer + i * 32)
        }
        let student = try makeStudent()
        student.forward(tokens: inputs.pointer, targets: targets.pointer, batch: 3, seq: 32)
        let logits = Array(UnsafeBufferPointer(start: student.logits, count: 96 * 257))
        let loss = DistillationLoss()
        let live = teacher.predict(tokens: inputs.pointer, targets: targets.pointer, batch: 3, seq: 32, topK: 10)
        let liveValue = loss.apply(logits: student.logits, targets: targets.pointer, rows: 96, vocab: 257, teacher: live,
                                   temperature: 2, weight: 0.7, writeGradient: false)
        let ids = Buffer<Int32>(count: 96 * 10), values = Buffer<Float>(count: 96 * 10)
        cache.rows(windows: windows, count: 3, ids: ids.pointer, logits: values.pointer)
        XCTAssertTrue(Array(UnsafeBufferPointer(start: student.logits, count: 96 * 257)) == logits)
        let cachedValue = loss.apply(logits: student.logits, targets: targets.pointer, rows: 96, vocab: 257,
                                     teacher: .topK(ids: ids.pointer, logits: values.pointer, k: 10),
                                     temperature: 2, weight: 0.7, writeGradient: false)
        XCTAssertEqual(cachedValue.loss.bitPattern, liveValue.loss.bitPattern, "\(cachedValue.loss) vs \(liveValue.loss)")
        XCTAssertGreaterThan(cachedValue.kl, 0)
        print("top-10 cache vs live teacher restricted to top 10: loss \(cachedValue.loss) vs \(liveValue.loss) (KL \(cachedValue.kl) vs \(liveValue.kl))")
        // And the full teacher's KL is close to the top-10 one's only approximately (a real restriction).
        let full = teacher.predict(tokens: inputs.pointer, targets: targets.pointer, batch: 3, seq: 32, topK: nil)
        let fullValue = loss.apply(logits: student.logits, targets: targets.pointer, rows: 96, vocab: 257, teacher: full,
                                   temperature: 2, weight: 0.7, writeGradient: false)
        XCTAssertNotEqual(fullValue.kl, cachedValue.kl)
        print("full teacher distribution: KL \(fullValue.kl)")

        // Training: live top-10 against the cache, 4 updates.
        var kd = DistillationOptions(teacher: "tiny teacher", steps: 4)
        kd.topK = 10
        let liveRun = try Trainer(model: try makeStudent(), options: makeOptions(steps: 4, kd: kd),
                                  train: train, valid: TokenStream(Self.corpus.valid))
        try liveRun.attachTeacher(teacher)
        kd.topK = nil
        kd.cache = path
        let cachedRun = try Trainer(model: try makeStudent(), options: makeOptions(steps: 4, kd: kd),
                                    train: train, valid: TokenStream(Self.corpus.valid))
        try cachedRun.attachTeacherCache(cache)
        XCTAssertEqual(cachedRun.options.distillation?.topK, 10)
        for _ in 0..<4 {
            XCTAssertEqual(try liveRun.trainStep().loss.bitPattern, try cachedRun.trainStep().loss.bitPattern)
        }
        XCTAssertTrue(bitIdentical(liveRun.model.parameters.pointer, cachedRun.model.parameters.pointer, liveRun.model.parameterCount))
        XCTAssertEqual(cachedRun.teacherFLOPs, header.teacherFLOPs)

        // Refusals: other data; a flipped payload byte.
        XCTAssertThrowsError(try cache.check(train: TokenStream(Self.corpus.valid), seq: 32, vocab: 257)) {
            XCTAssertTrue("\($0)".contains(path) && "\($0)".contains("other training tokens"), "\($0)")
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 5] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TeacherCache(path: path)) {
            XCTAssertTrue("\($0)".contains("corrupt"), "\($0)")
        }
    }

    /// A teacher of another vocabulary or architecture, or too short a context, is refused
    /// naming the field.
    func testMismatchedTeacherIsRefused() throws {
        let student = try makeStudent()
        let trainer = try Trainer(model: student, options: makeOptions(steps: 2, kd: DistillationOptions(teacher: "t", steps: 2)),
                                  train: Self.corpus.train, valid: Self.corpus.valid)
        for (config, words) in [(ModelConfig(layers: 1, width: 16, heads: 2, vocab: 300, context: 32), "vocabulary"),
                                (ModelConfig(layers: 1, width: 16, heads: 2, vocab: 257, context: 16), "context")] {
            XCTAssertThrowsError(try trainer.attachTeacher(Teacher(model: try GPT(config: config, seed: 1), source: "bad"))) {
                XCTAssertTrue("\($0)".contains("distillation.teacher") && "\($0)".contains(words), "\($0)")
            }
        }
    }
}
