import Model
import Tensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the distillation weight a_t moves over the KI steps (spec section 6). t counts updates
/// from the start of distillation; after `steps` updates a_t is 0 under every schedule.
public enum DistillationSchedule: String, Codable, CaseIterable, Sendable {
    /// a_t = max(0, 1 - t / T): pure distillation first, pure self-learning after T (the paper's).
    case linear
    /// a_t = `weight` (0.5: a 1:1 mix) for t < T.
    case constant
    /// a_t = 1 for t < T: a hard switch from distillation to self-learning.
    case `switch`
}

/// When distillation may end before its T_kd updates.
public enum DistillationStop: String, Codable, CaseIterable, Sendable {
    /// Only after T_kd updates (the paper's).
    case steps
    /// Also at the first validation where the student's loss is at or below the teacher's on the
    /// same validation batches: from then on the teacher can only pull the student back.
    case teacher
}

/// When distillation may begin.
public enum DistillationStart: String, Codable, CaseIterable, Sendable {
    /// At the first update (the paper's).
    case first
    /// At the first validation where the teacher is further ahead of the student (validation
    /// loss) than the student moved by itself since the previous validation; never if the student
    /// passes the teacher first. A teacher the student would catch within one validation interval
    /// has little to teach and, in the first updates, can hold it back for the rest of the run.
    case ahead
}

/// What a validation decided for distillation (`DistillationOptions.decide`).
public enum DistillationEvent: Int64, Sendable {
    case none = 0, started = 1, passed = 2
}

/// Knowledge inheritance settings of a run (saved in checkpoints with the other options). The
/// defaults (`DistillationOptions.defaults`) are the ones `scripts/ki_sweep.sh` found never
/// worse than training from scratch (docs/KI.md "Defaults"); the paper's are all available.
public struct DistillationOptions: Codable, Equatable, Sendable {
    /// Where the teacher came from: a checkpoint file or run folder, or "previous" (a lifelong
    /// stage's pre-growth model). A run with a top-K cache names the cache's teacher.
    public var teacher: String
    /// XXH64 of the teacher's parameters (hex), set when the run starts and checked on resume.
    public var teacherHash: String?
    /// T_kd: updates with distillation.
    public var steps: Int
    /// tau, the softmax temperature of both distributions in the KL term.
    public var temperature: Float
    public var schedule: DistillationSchedule
    /// a_t of the constant schedule.
    public var weight: Float = 0.5
    /// Keep only the teacher's K most probable tokens per position (renormalized), or nil for
    /// the full distribution. With `cache` it is the cache's K.
    public var topK: Int?
    /// A top-K teacher cache file (`TeacherCache`, docs/KI.md) used instead of a live teacher.
    public var cache: String?
    /// The update at which distillation starts (t = step - startStep); 0 for a plain run.
    public var startStep: Int = 0
    /// Whether distillation also ends once the student passes the teacher (`.teacher`).
    public var until: DistillationStop
    /// The teacher's validation loss on the run's validation batches (the `.teacher` rule's
    /// bar), measured once when the teacher is first attached.
    public var teacherValidLoss: Float?
    /// The update from which a_t = 0 because the student passed the teacher (decided by rank 0
    /// at a validation and broadcast), nil while it has not.
    public var passedTeacherAtStep: Int?
    /// When distillation begins (`.ahead`: once the teacher is far enough ahead).
    public var start: DistillationStart
    /// The update at which `.ahead` began distillation, nil before.
    public var startedAtStep: Int?
    /// The student's validation loss at the previous validation (the `.ahead` gate's reference
    /// for the student's own progress); measured at the start, then updated at each validation.
    public var studentValidLoss: Float?

    /// The defaults of `elle train --teacher` and of a plan's `ki` block, chosen from
    /// `scripts/ki_sweep.sh` (docs/KI.md "Defaults"): tau 1 (tau 2 and 4 ended worse than
    /// scratch where tau 1 did not), the paper's linear a_t over the whole run, and distillation
    /// ending once the student passes the teacher (a weaker teacher can only hold it back).
    public static let defaults = (temperature: Float(1), schedule: DistillationSchedule.linear, until: DistillationStop.teacher,
                                  start: DistillationStart.ahead)

    /// The validation rules are off unless asked for: they act only in a run whose phase
    /// validates (`PlainRun`, `LifelongPhase`); the command line and plans pass `defaults`.
    public init(teacher: String, steps: Int, temperature: Float = defaults.temperature,
                schedule: DistillationSchedule = defaults.schedule, until: DistillationStop = .steps,
                start: DistillationStart = .first) {
        self.teacher = teacher
        self.steps = steps
        self.temperature = temperature
        self.schedule = schedule
        self.until = until
        self.start = start
    }

    enum CodingKeys: String, CodingKey {
        case teacher, teacherHash, steps, temperature, schedule, weight, topK, cache, startStep, until, teacherValidLoss, passedTeacherAtStep
        case start, startedAtStep, studentValidLoss
    }

    /// Checkpoints written before `until` and `start` existed ran without the rules: they resume
    /// that way.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        teacher = try c.decode(String.self, forKey: .teacher)
        teacherHash = try c.decodeIfPresent(String.self, forKey: .teacherHash)
        steps = try c.decode(Int.self, forKey: .steps)
        temperature = try c.decode(Float.self, forKey: .temperature)
        schedule = try c.decode(DistillationSchedule.self, forKey: .schedule)
        weight = try c.decode(Float.self, forKey: .weight)
        topK = try c.decodeIfPresent(Int.self, forKey: .topK)
        cache = try c.decodeIfPresent(String.self, forKey: .cache)
        startStep = try c.decode(Int.self, forKey: .startStep)
        until = try c.decodeIfPresent(DistillationStop.self, forKey: .until) ?? .steps
        teacherValidLoss = try c.decodeIfPresent(Float.self, forKey: .teacherValidLoss)
        passedTeacherAtStep = try c.decodeIfPresent(Int.self, forKey: .passedTeacherAtStep)
        start = try c.decodeIfPresent(DistillationStart.self, forKey: .start) ?? .first
        startedAtStep = try c.decodeIfPresent(Int.self, forKey: .startedAtStep)
        studentValidLoss = try c.decodeIfPresent(Float.self, forKey: .studentValidLoss)
    }

    /// a_t before update `step` (0-based: the update that makes `step + 1`).
    public func weight(atStep step: Int) -> Float {
        let t = step - startStep
        guard t >= 0, t < steps else { return 0 }
        if let passedTeacherAtStep, step >= passedTeacherAtStep { return 0 }
        // `.ahead`: nothing before the gate opens; the linear schedule runs from the gate to T_kd.
        let begin = start == .ahead ? startedAtStep : startStep
        guard let begin, step >= begin else { return 0 }
        switch schedule {
        case .linear: return max(0, 1 - Float(step - begin) / Float(startStep + steps - begin))
        case .constant: return weight
        case .switch: return 1
        }
    }

    /// Whether the `.teacher` rule still has to watch validations at update `step`: it applies,
    /// has not fired, and distillation is not over anyway.
    public func watchesTeacher(atStep step: Int) -> Bool {
        passedTeacherAtStep == nil && step - startStep < steps
            && (until == .teacher || (start == .ahead && startedAtStep == nil))
    }

    /// Whether the rules need the teacher's validation loss (and the student's first one).
    public var needsValidation: Bool { until == .teacher || start == .ahead }

    /// Rank 0's decision at a validation of update `step` with the student's loss `validLoss`
    /// (the teacher's is `teacherValidLoss`); `apply` records it on every rank.
    public func decide(validLoss: Float, atStep step: Int) -> DistillationEvent {
        guard watchesTeacher(atStep: step), let bar = teacherValidLoss else { return .none }
        if start == .ahead && startedAtStep == nil {
            if validLoss <= bar { return .passed }
            let progress = (studentValidLoss ?? .infinity) - validLoss
            return validLoss - bar > progress ? .started : .none
        }
        return until == .teacher && validLoss <= bar ? .passed : .none
    }

    /// Records `event` decided at update `step` and the student's loss for the next decision.
    public mutating func apply(_ event: DistillationEvent, validLoss: Float, atStep step: Int) {
        if start == .ahead && startedAtStep == nil { studentValidLoss = validLoss }
        switch event {
        case .none: break
        case .started: startedAtStep = step
        case .passed: passedTeacherAtStep = step
        }
    }

    /// Updates in 0..<step that ran the teacher (those with a_t > 0).
    public func teacherUpdates(before step: Int) -> Int {
        let end = min(step, startStep + steps)
        guard end > startStep else { return 0 }
        return (startStep..<end).reduce(0) { $0 + (weight(atStep: $1) > 0 ? 1 : 0) }
    }

    /// Throws naming the first invalid field.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw ConfigError(field: "distillation.\(field)", message: why) }
        }
        try check(steps >= 0, "steps", "must not be negative (got \(steps))")
        try check(temperature > 0 && temperature.isFinite, "temperature", "must be positive (got \(temperature))")
        try check(weight >= 0 && weight <= 1, "weight", "must be in [0, 1] (got \(weight))")
        try check(topK == nil || topK! >= 1, "topK", "must be at least 1 (got \(topK ?? 0))")
        try check(startStep >= 0, "startStep", "must not be negative (got \(startStep))")
    }
}

/// The teacher's side of the distillation term for the rows of the student's logits.
public enum TeacherRows {
    /// Full teacher logits, one row of the vocabulary per student row.
    case dense(UnsafePointer<Float>)
    /// The teacher's K most probable tokens per row: ids and logits (rows x k each). Their
    /// softmax at the temperature (over the K alone) is the teacher's distribution.
    case topK(ids: UnsafePointer<Int32>, logits: UnsafePointer<Float>, k: Int)
}

/// The KI loss (spec section 6) on a batch of logit rows:
///
///     L = (1 - a) CE + a tau^2 KL(p_T(tau) || p_S(tau)),   p(tau) = softmax(logits / tau),
///
/// both terms averaged over the rows with a target >= 0 (every position for GPT; the masked
/// positions for BERT, whose logits exist only there). With top-K teacher rows, p_T(tau) is the
/// softmax of the K kept logits (0 elsewhere). The gradient with respect to the student's
/// logits is (1 - a)(p_S(1) - onehot) + a tau (p_S(tau) - p_T(tau)), divided by the row count.
///
/// Keeps per-row scratch between calls, so a training step allocates nothing once warm.
public final class DistillationLoss {
    public struct Value: Sendable {
        /// Mean cross-entropy and mean KL(p_T(tau) || p_S(tau)) over the counted rows.
        public var crossEntropy: Double
        public var kl: Double
        public var rows: Int
        /// (1 - a) CE + a tau^2 KL.
        public var loss: Double
    }

    private var rowLosses = Buffer<Double>(count: 0)

    public init() {}

    /// Computes the loss; with `writeGradient`, replaces `logits` by d(loss)/d(logits) (rows
    /// without a target get 0). Rows are independent and summed in order: the same bits for any
    /// thread count.
    public func apply(logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>, rows n: Int, vocab v: Int,
                      teacher: TeacherRows, temperature tau: Float, weight a: Float, writeGradient: Bool) -> Value {
        if rowLosses.count < 2 * n { rowLosses = Buffer<Double>(count: 2 * n) }
        let losses = rowLosses.pointer
        var counted = 0
        for row in 0..<n where targets[row] >= 0 { counted += 1 }
        let scale = counted > 0 ? 1 / Float(counted) : 0
        let ceScale = scale * (1 - a), klScale = scale * a * tau
        let invTau = 1 / tau
        Parallel.forRanges(n, minimum: 4) { _, range in
            for row in range {
                let z = logits + row * v
                let target = Int(targets[row])
                if target < 0 {
                    losses[2 * row] = 0; losses[2 * row + 1] = 0
                    if writeGradient { z.update(repeating: 0, count: v) }
                    continue
                }
                // Student: log-sum-exp at 1 and at tau, both shifted by the row maximum m.
                let m = Self.rowMax(z, v)
                let mv = Vec(repeating: m), it = Vec(repeating: invTau)
                var s1 = Vec(), sT = Vec()
                var j = 0
                while j < v {
                    let x = j + vecWidth <= v ? loadVec(z + j) : loadPartial(z + j, v - j, fill: -Float.infinity)
                    let d = x - mv
                    s1 += expVec(d)
                    sT += expVec(d * it)
                    j += vecWidth
                }
                let log1 = Float(log(Double(horizontalSum(s1))))
                let logT = Float(log(Double(horizontalSum(sT))))
                losses[2 * row] = Double(m + log1 - z[target])
                // KL = sum_j q_j (log q_j - log p_j), log p_j = (z_j - m) / tau - logT.
                var kl: Float = 0
                switch teacher {
                case .dense(let teacherLogits):
                    let y = teacherLogits + row * v
                    let mt = Self.rowMax(y, v), mtv = Vec(repeating: mt)
                    var st = Vec()
                    j = 0
                    while j < v {
                        let x = j + vecWidth <= v ? loadVec(y + j) : loadPartial(y + j, v - j, fill: -Float.infinity)
                        st += expVec((x - mtv) * it)
                        j += vecWidth
                    }
                    let logQ = Vec(repeating: Float(log(Double(horizontalSum(st))))), logP = Vec(repeating: logT)
                    var acc = Vec()
                    j = 0
                    while j < v {
                        let count = min(vecWidth, v - j)
                        let zt = count == vecWidth ? loadVec(y + j) : loadPartial(y + j, count, fill: mt)
                        let zs = count == vecWidth ? loadVec(z + j) : loadPartial(z + j, count, fill: m)
                        let lq = (zt - mtv) * it - logQ
                        let lp = (zs - mv) * it - logP
                        var term = expVec(lq) * (lq - lp)
                        if count < vecWidth { term = Self.keepFirst(term, count) }
                        acc += term
                        j += vecWidth
                    }
                    kl = horizontalSum(acc)
                    if writeGradient {
                        let c1 = Vec(repeating: ceScale), cT = Vec(repeating: klScale)
                        let l1 = Vec(repeating: log1)
                        j = 0
                        while j < v {
                            let count = min(vecWidth, v - j)
                            let zs = count == vecWidth ? loadVec(z + j) : loadPartial(z + j, count, fill: m)
                            let zt = count == vecWidth ? loadVec(y + j) : loadPartial(y + j, count, fill: mt)
                            let d = zs - mv
                            let q = expVec((zt - mtv) * it - logQ)
                            let g = c1 * expVec(d - l1) + cT * (expVec(d * it - logP) - q)
                            if count == vecWidth { storeVec(g, z + j) } else { storePartial(g, z + j, count) }
                            j += vecWidth
                        }
                    }
                case .topK(let ids, let teacherLogits, let k):
                    let rowIds = ids + row * k, y = teacherLogits + row * k
                    var mt = -Float.infinity
                    for i in 0..<k { mt = max(mt, y[i]) }
                    var st: Float = 0
                    for i in 0..<k { st += Float(exp(Double((y[i] - mt) * invTau))) }
                    let logQ = Float(log(Double(st)))
                    for i in 0..<k {
                        let lq = (y[i] - mt) * invTau - logQ
                        let lp = (z[Int(rowIds[i])] - m) * invTau - logT
                        kl += Float(exp(Double(lq))) * (lq - lp)
                    }
                    if writeGradient {
                        // The teacher's probabilities, before the row is overwritten.
                        let c1 = Vec(repeating: ceScale), cT = Vec(repeating: klScale)
                        let l1 = Vec(repeating: log1), logP = Vec(repeating: logT)
                        j = 0
                        while j < v {
                            let count = min(vecWidth, v - j)
                            let d = (count == vecWidth ? loadVec(z + j) : loadPartial(z + j, count, fill: m)) - mv
                            let g = c1 * expVec(d - l1) + cT * expVec(d * it - logP)
                            if count == vecWidth { storeVec(g, z + j) } else { storePartial(g, z + j, count) }
                            j += vecWidth
                        }
                        for i in 0..<k {
                            let q = Float(exp(Double((y[i] - mt) * invTau - logQ)))
                            z[Int(rowIds[i])] -= klScale * q
                        }
                    }
                }
                losses[2 * row + 1] = Double(kl)
                if writeGradient { z[target] -= ceScale }
            }
        }
        var ce = 0.0, kl = 0.0
        for row in 0..<n where targets[row] >= 0 {
            ce += losses[2 * row]
            kl += losses[2 * row + 1]
        }
        let meanCE = counted > 0 ? ce / Double(counted) : 0
        let meanKL = counted > 0 ? kl / Double(counted) : 0
        let t2 = Double(tau) * Double(tau)
        return Value(crossEntropy: meanCE, kl: meanKL, rows: counted,
                     loss: (1 - Double(a)) * meanCE + Double(a) * t2 * meanKL)
    }

    @inline(__always)
    static func rowMax(_ x: UnsafePointer<Float>, _ v: Int) -> Float {
        var mx = Vec(repeating: -Float.infinity)
        var j = 0
        while j + vecWidth <= v { mx = vmax(mx, loadVec(x + j)); j += vecWidth }
        if j < v { mx = vmax(mx, loadPartial(x + j, v - j, fill: -Float.infinity)) }
        return horizontalMax(mx)
    }

    /// `x` with lanes count..< zeroed.
    @inline(__always)
    static func keepFirst(_ x: Vec, _ count: Int) -> Vec {
        var out = Vec()
        for i in 0..<count { out[i] = x[i] }
        return out
    }
}

/// The K largest values of each row of `x` (rows x v) with their column indices, largest first
/// (ties: the lower index first), written to `ids` and `values` (rows x k each).
public func topK(_ x: UnsafePointer<Float>, rows n: Int, vocab v: Int, k: Int,
                 ids: UnsafeMutablePointer<Int32>, values: UnsafeMutablePointer<Float>) {
    precondition(k >= 1 && k <= v, "top-K needs 1 <= K <= vocabulary (K = \(k), vocabulary \(v))")
    Parallel.forRanges(n, minimum: 4) { _, range in
        for row in range {
            let r = x + row * v, outIds = ids + row * k, outValues = values + row * k
            var filled = 0
            var j = 0
            while j < v {
                let count = min(vecWidth, v - j)
                // Skip a vector whose largest value cannot enter a full list.
                if filled == k {
                    let block = count == vecWidth ? loadVec(r + j) : loadPartial(r + j, count, fill: -Float.infinity)
                    if horizontalMax(block) <= outValues[k - 1] { j += vecWidth; continue }
                }
                for c in j..<(j + count) {
                    let value = r[c]
                    if filled == k && !(value > outValues[k - 1]) { continue }
                    // Insert keeping descending order; equal values keep the earlier index first.
                    var p = filled < k ? filled : k - 1
                    while p > 0 && outValues[p - 1] < value {
                        if p < k { outValues[p] = outValues[p - 1]; outIds[p] = outIds[p - 1] }
                        p -= 1
                    }
                    outValues[p] = value
                    outIds[p] = Int32(c)
                    if filled < k { filled += 1 }
                }
                j += vecWidth
            }
        }
    }
}
