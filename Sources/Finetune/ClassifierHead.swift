import Foundation
import Model
import Tensors

/// The sequence classifier's head on the encoder's begin-token vectors h (B, D), as in
/// BertForSequenceClassification: pooled = tanh(h Wp^T + bp), dropout, logits = pooled Wc^T + bc
/// over C classes, softmax cross-entropy against the labels.
///
/// Parameters and gradients are flat buffers (pool.weight (D, D), pool.bias (D),
/// classifier.weight (C, D), classifier.bias (C)); `backward` adds into `gradients`.
public final class ClassifierHead {
    public let width: Int
    public let classes: Int
    public let tensors: [TensorSpec]
    public let parameters: FloatBuffer
    public let gradients: FloatBuffer

    private var rows = 0
    private var pooled = FloatBuffer(count: 0)      // (B, D): tanh output
    private var dropped = FloatBuffer(count: 0)     // (B, D): classifier input
    private var logitBuffer = FloatBuffer(count: 0) // (B, C): logits, then their gradients
    private var logSumExp = FloatBuffer(count: 0)
    private var losses = FloatBuffer(count: 0)
    private var targets = Buffer<Int32>(count: 0)
    private var dHidden = FloatBuffer(count: 0)     // (B, D)
    private var dPooled = FloatBuffer(count: 0)
    private var lastDropout: Dropout?
    private var hidden: UnsafePointer<Float>?
    private var hasLabels = false

    public init(width: Int, classes: Int) {
        precondition(width >= 1 && classes >= 2, "a classifier head needs width >= 1 and at least 2 classes")
        self.width = width
        self.classes = classes
        var offset = 0
        var specs: [TensorSpec] = []
        for (name, shape, decays) in [("pool.weight", [width, width], true), ("pool.bias", [width], false),
                                      ("classifier.weight", [classes, width], true), ("classifier.bias", [classes], false)] {
            specs.append(TensorSpec(name: name, shape: shape, offset: offset, decays: decays))
            offset += shape.reduce(1, *)
        }
        tensors = specs
        parameters = FloatBuffer(count: offset)
        gradients = FloatBuffer(count: offset)
    }

    public var parameterCount: Int { parameters.count }
    private var poolWeight: UnsafeMutablePointer<Float> { parameters.pointer }
    private var poolBias: UnsafeMutablePointer<Float> { parameters.pointer + tensors[1].offset }
    private var classWeight: UnsafeMutablePointer<Float> { parameters.pointer + tensors[2].offset }
    private var classBias: UnsafeMutablePointer<Float> { parameters.pointer + tensors[3].offset }

    /// Weights ~ N(0, 0.02), biases 0 (BERT's initialization), deterministic from `seed`.
    public func initialize(seed: UInt64) {
        parameters.zero()
        for (index, spec) in tensors.enumerated() where spec.decays {
            var rng = Xoshiro256(seed: SeedStream.classifierInit(seed: seed, tensor: index))
            let p = parameters.pointer + spec.offset
            for i in 0..<spec.count { p[i] = Float(rng.nextNormal() * 0.02) }
        }
    }

    public func zeroGradients() { gradients.zero() }

    /// Logits (B, C) of the last forward pass (overwritten by `backward`).
    public var logits: UnsafePointer<Float> { UnsafePointer(logitBuffer.pointer) }

    /// Runs the head on `hidden` (B, D), which must stay valid until `backward`. With `labels`
    /// (B class indices) returns the sum of the B losses (Float64), else 0.
    @discardableResult
    public func forward(hidden h: UnsafePointer<Float>, batch b: Int, labels: UnsafePointer<Int32>?, dropout: Dropout?) -> Double {
        let d = width, c = classes
        prepare(batch: b)
        hidden = h
        lastDropout = dropout
        Linear.forward(out: pooled.pointer, x: h, weight: poolWeight, bias: poolBias, rows: b, inFeatures: d, outFeatures: d)
        let p = pooled.pointer
        for i in 0..<(b * d) { p[i] = tanhf(p[i]) }
        if let dropout { dropout.apply(out: dropped.pointer, x: p, count: b * d) } else { dropped.pointer.update(from: p, count: b * d) }
        Linear.forward(out: logitBuffer.pointer, x: dropped.pointer, weight: classWeight, bias: classBias,
                       rows: b, inFeatures: d, outFeatures: c)
        guard let labels else { hasLabels = false; return 0 }
        for r in 0..<b {
            precondition(labels[r] >= 0 && Int(labels[r]) < c, "label \(labels[r]) of row \(r) outside 0..<\(c)")
            targets[r] = labels[r]
        }
        hasLabels = true
        return CrossEntropy.forward(losses: losses.pointer, logSumExp: logSumExp.pointer, logits: logitBuffer.pointer,
                                    targets: targets.pointer, rows: b, vocab: c).sum
    }

    /// Adds `scale` x d(sum of the last forward's losses)/d(parameters) into `gradients` and
    /// returns the gradient with respect to the hidden vectors (B, D), scaled alike.
    public func backward(scale: Float) -> UnsafePointer<Float> {
        guard hasLabels, let h = hidden else { preconditionFailure("backward without a forward pass with labels") }
        let b = rows, d = width, c = classes
        let G = gradients.pointer
        CrossEntropy.backward(logits: logitBuffer.pointer, logSumExp: logSumExp.pointer, targets: targets.pointer,
                              rows: b, vocab: c, scale: scale)
        Linear.backward(dx: dPooled.pointer, dweight: G + tensors[2].offset, dbias: G + tensors[3].offset,
                        dout: logitBuffer.pointer, x: dropped.pointer, weight: classWeight, rows: b, inFeatures: d, outFeatures: c)
        if let lastDropout { lastDropout.apply(out: dPooled.pointer, x: dPooled.pointer, count: b * d) }
        // tanh' = 1 - tanh^2
        let p = pooled.pointer, dp = dPooled.pointer
        for i in 0..<(b * d) { dp[i] *= 1 - p[i] * p[i] }
        Linear.backward(dx: dHidden.pointer, dweight: G, dbias: G + tensors[1].offset, dout: dp, x: h,
                        weight: poolWeight, rows: b, inFeatures: d, outFeatures: d)
        hasLabels = false
        return UnsafePointer(dHidden.pointer)
    }

    /// The class with the largest logit in each row of the last forward pass (ties: the lowest).
    public func predictions() -> [Int] {
        (0..<rows).map { r in
            let l = logitBuffer.pointer + r * classes
            var best = 0
            for k in 1..<classes where l[k] > l[best] { best = k }
            return best
        }
    }

    private func prepare(batch b: Int) {
        rows = b
        guard pooled.count < b * width else { return }
        pooled = FloatBuffer(count: b * width)
        dropped = FloatBuffer(count: b * width)
        dPooled = FloatBuffer(count: b * width)
        dHidden = FloatBuffer(count: b * width)
        logitBuffer = FloatBuffer(count: b * classes)
        logSumExp = FloatBuffer(count: b)
        losses = FloatBuffer(count: b)
        targets = Buffer<Int32>(count: b)
    }
}
