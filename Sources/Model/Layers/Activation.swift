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
