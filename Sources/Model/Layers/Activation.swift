import Tensors

/// An activation applied element by element (`GELU`, `ErfGELU`): forward into float32 or bf16
/// (mixed precision: when only products read the result), backward in float32.
public protocol ElementwiseActivation {
    static func forwardVec(_ x: Vec) -> Vec
    static func derivativeVec(_ x: Vec) -> Vec
}

extension ElementwiseActivation {
    /// out, x (n)
    public static func forward(out: OperandOutput, x: UnsafePointer<Float>, count n: Int) {
        out.run(ActivationForward<Self>(x: x, count: n))
    }

    /// Float32 output.
    public static func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
        forward(out: .float(out), x: x, count: n)
    }

    /// dx = dout * f'(x) (dx may alias dout)
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>, count n: Int
    ) {
        Parallel.forRanges(n, grain: 256, minimum: 4096) { _, r in
            var i = r.lowerBound
            while i + vecWidth <= r.upperBound {
                storeVec(loadVec(dout + i) * derivativeVec(loadVec(x + i)), dx + i)
                i += vecWidth
            }
            if i < r.upperBound {
                let k = r.upperBound - i
                storePartial(loadPartial(dout + i, k) * derivativeVec(loadPartial(x + i, k)), dx + i, k)
            }
        }
    }
}

struct ActivationForward<Activation: ElementwiseActivation>: SinkKernel {
    let x: UnsafePointer<Float>, count: Int

    func run<Sink: VectorSink>(_ out: Sink) {
        Parallel.forRanges(count, grain: 256, minimum: 4096) { _, r in
            var i = r.lowerBound
            while i + vecWidth <= r.upperBound { out.store(Activation.forwardVec(loadVec(x + i)), at: i); i += vecWidth }
            if i < r.upperBound {
                let k = r.upperBound - i
                out.storePartial(Activation.forwardVec(loadPartial(x + i, k)), at: i, count: k)
            }
        }
    }
}

/// Columns `first`..< of each row multiplied by `scale`: the new FFN units of a masked ramp
/// (`GrowthRamp`).
public struct ColumnMask {
    public let first: Int
    public let scale: Float
    public init(first: Int, scale: Float) {
        self.first = first
        self.scale = scale
    }
}

extension ElementwiseActivation {
    /// out, x (rows, width); with a mask, out's columns from `mask.first` on are f(x) * scale.
    public static func forward(out: OperandOutput, x: UnsafePointer<Float>, rows: Int, width: Int, mask: ColumnMask?) {
        guard let mask, mask.first < width, mask.scale != 1 else {
            forward(out: out, x: x, count: rows * width)
            return
        }
        out.run(MaskedActivationForward<Self>(x: x, rows: rows, width: width, mask: mask))
    }
}

struct MaskedActivationForward<Activation: ElementwiseActivation>: SinkKernel {
    let x: UnsafePointer<Float>, rows: Int, width: Int, mask: ColumnMask

    func run<Sink: VectorSink>(_ out: Sink) {
        Parallel.forRanges(rows, minimum: 16) { _, range in
            for r in range {
                for (segment, scale) in [(0..<mask.first, Float(1)), (mask.first..<width, mask.scale)] {
                    let s = Vec(repeating: scale)
                    var i = r * width + segment.lowerBound
                    let end = r * width + segment.upperBound
                    while i + vecWidth <= end { out.store(s * Activation.forwardVec(loadVec(x + i)), at: i); i += vecWidth }
                    if i < end { out.storePartial(s * Activation.forwardVec(loadPartial(x + i, end - i)), at: i, count: end - i) }
                }
            }
        }
    }
}
