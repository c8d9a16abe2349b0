import Tensors

/// GELU, tanh approximation (GPT-2's "gelu_new", PyTorch's approximate="tanh"):
/// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
public enum GELU: ElementwiseActivation {
    @usableFromInline @inline(__always) static var k0: Vec { Vec(repeating: 0.797_884_560_802_865_4) } // sqrt(2/pi)
    @usableFromInline @inline(__always) static var k1: Vec { Vec(repeating: 0.044_715) }
    @usableFromInline @inline(__always) static var half: Vec { Vec(repeating: 0.5) }
    @usableFromInline @inline(__always) static var one: Vec { Vec(repeating: 1) }

    @_transparent
    public static func forwardVec(_ x: Vec) -> Vec {
        let u = k0 * x.addingProduct(k1 * x * x, x)
        return half * x * (one + tanhVec(u))
    }

    /// dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(u)
    @_transparent
    public static func derivativeVec(_ x: Vec) -> Vec {
        let x2 = x * x
        let u = k0 * x.addingProduct(k1 * x2, x)
        let t = tanhVec(u)
        let du = k0 * (one + Vec(repeating: 3 * 0.044_715) * x2)
        return half * (one + t) + half * x * (one - t * t) * du
    }
}
