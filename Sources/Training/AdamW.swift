import Model
import Tensors

/// Adam hyperparameters (decoupled weight decay as in Loshchilov & Hutter / torch.optim.AdamW).
public struct AdamWSettings: Codable, Equatable, Sendable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.98
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.01
    public init(beta1: Float = 0.9, beta2: Float = 0.98, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

/// AdamW over a flat parameter buffer, or over one range of it (`shard`: ZeRO-1, each rank
/// updates the parameters it owns and keeps only their moments). Moments `m` and `v` hold
/// `shard.count` values, `m[i - shard.lowerBound]` for parameter i; weight decay applies to the
/// tensors whose `TensorSpec.decays` is set (matrices and embeddings). The update is elementwise,
/// so a shard's parameters get the same bits as the whole-buffer update gives them.
public final class AdamW {
    public var settings: AdamWSettings
    public let m: FloatBuffer
    public let v: FloatBuffer
    /// The parameters this optimizer updates (all of them without ZeRO).
    public let shard: Range<Int>
    /// Updates taken so far (bias correction uses step + 1 for the next one).
    public var step: Int
    private let tensors: [TensorSpec]

    public init(tensors: [TensorSpec], count: Int, settings: AdamWSettings, shard: Range<Int>? = nil) {
        self.settings = settings
        self.tensors = tensors
        self.shard = shard ?? 0..<count
        m = FloatBuffer(count: self.shard.count)
        v = FloatBuffer(count: self.shard.count)
        step = 0
    }

    /// An optimizer that continues from existing moments (taken over, not copied) after `step`
    /// updates, e.g. moments carried through model growth.
    public init(tensors: [TensorSpec], settings: AdamWSettings, m: FloatBuffer, v: FloatBuffer, step: Int, shard: Range<Int>? = nil) {
        let count = tensors.last.map { $0.offset + $0.count } ?? 0
        self.shard = shard ?? 0..<count
        precondition(m.count == v.count && m.count == self.shard.count && self.shard.upperBound <= count,
                     "Adam moments of \(m.count) and \(v.count) values do not fit the layout")
        self.settings = settings
        self.tensors = tensors
        self.m = m
        self.v = v
        self.step = step
    }

    /// Copies into `m` and `v` what `source` (moments of the parameters `covering`) holds for this
    /// optimizer's shard: all of it, a part, or nothing.
    public func copyMoments(from source: (m: FloatBuffer, v: FloatBuffer), covering: Range<Int>) {
        let lower = max(covering.lowerBound, shard.lowerBound), upper = min(covering.upperBound, shard.upperBound)
        guard lower < upper else { return }
        m.pointer.advanced(by: lower - shard.lowerBound).update(from: source.m.pointer + (lower - covering.lowerBound), count: upper - lower)
        v.pointer.advanced(by: lower - shard.lowerBound).update(from: source.v.pointer + (lower - covering.lowerBound), count: upper - lower)
    }

    /// One update: p = p (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    /// With `weightCopy` (mixed precision), the same pass writes the new parameters' bf16 values
    /// there: the one conversion of the weights per update.
    public func update(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float, weightCopy: BF16Copy? = nil) {
        Profiler.measure(.optimizer) {
            apply(parameters: parameters, gradients: gradients, learningRate: lr, copy: weightCopy?.pointer)
        }
        weightCopy?.isCurrent = true
    }

    private func apply(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float, copy: UnsafeMutablePointer<BF16>?) {
        if let copy {
            precondition(shard == 0..<parameters.count, "the bf16 copy is written by a whole-buffer update only")
            apply(parameters: parameters, gradients: gradients, learningRate: lr, copy: BF16Sink(copy))
        } else {
            apply(parameters: parameters, gradients: gradients, learningRate: lr, copy: NoSink())
        }
    }

    private func apply<Sink: VectorSink>(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float, copy C: Sink) {
        step += 1
        let s = settings
        let t = Double(step)
        let bc1 = Float(1 - pow(Double(s.beta1), t))
        let bc2Sqrt = Float((1 - pow(Double(s.beta2), t)).squareRoot())
        let stepSize = lr / bc1
        // Moments are indexed from the shard's start.
        let P = parameters.pointer, G = gradients.pointer, M = m.pointer - shard.lowerBound, V = v.pointer - shard.lowerBound
        for spec in tensors {
            let lower = max(spec.offset, shard.lowerBound), upper = min(spec.offset + spec.count, shard.upperBound)
            guard lower < upper else { continue }
            let keep = 1 - lr * (spec.decays ? s.weightDecay : 0)
            let base = lower
            Parallel.forRanges(upper - lower, grain: 1024, minimum: 1 << 14) { _, r in
                let b1 = Vec(repeating: s.beta1), b1c = Vec(repeating: 1 - s.beta1)
                let b2 = Vec(repeating: s.beta2), b2c = Vec(repeating: 1 - s.beta2)
                let keepV = Vec(repeating: keep), stepV = Vec(repeating: stepSize)
                let bc2V = Vec(repeating: bc2Sqrt), epsV = Vec(repeating: s.epsilon)
                @inline(__always) func lanes(_ i: Int, _ k: Int) {
                    let g = k == vecWidth ? loadVec(G + i) : loadPartial(G + i, k)
                    var mv = k == vecWidth ? loadVec(M + i) : loadPartial(M + i, k)
                    var vv = k == vecWidth ? loadVec(V + i) : loadPartial(V + i, k)
                    var p = k == vecWidth ? loadVec(P + i) : loadPartial(P + i, k)
                    mv = (b1 * mv).addingProduct(b1c, g)
                    vv = (b2 * vv).addingProduct(b2c * g, g)
                    let denom = vv.squareRoot() / bc2V + epsV
                    p = (p * keepV) - stepV * mv / denom
                    if k == vecWidth {
                        storeVec(mv, M + i); storeVec(vv, V + i); storeVec(p, P + i)
                        C.store(p, at: i)
                    } else {
                        storePartial(mv, M + i, k); storePartial(vv, V + i, k); storePartial(p, P + i, k)
                        C.storePartial(p, at: i, count: k)
                    }
                }
                var i = base + r.lowerBound
                let end = base + r.upperBound
                while i + vecWidth <= end { lanes(i, vecWidth); i += vecWidth }
                if i < end { lanes(i, end - i) }
            }
        }
    }
}

/// Scales gradients so their global L2 norm is at most `maxNorm`; returns the norm before.
@discardableResult
public func clipGradients(_ gradients: FloatBuffer, maxNorm: Float?) -> Float {
    Profiler.measure(.optimizer) {
        let norm = Float(sumOfSquares(gradients.pointer, count: gradients.count).squareRoot())
        if let maxNorm, norm > maxNorm, norm.isFinite {
            scaleInPlace(gradients.pointer, maxNorm / norm, count: gradients.count)
        }
        return norm
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
