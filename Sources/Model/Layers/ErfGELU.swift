import Tensors

/// GELU with the exact normal CDF, y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): BERT's (and
/// fairseq's, PyTorch's default) activation. GPT-2 uses the tanh approximation (`GELU`).
///
/// Phi comes from erfc(z), z = |x| / sqrt 2, by the Chebyshev fit t exp(-z^2 + P(t)),
/// t = 1 / (1 + z / 2), P of degree 9 (Numerical Recipes' erfcc; relative error about 1.2e-7 for every z >= 0,
/// tails included): Phi(x) = erfc(z) / 2 for x < 0 and 1 - erfc(z) / 2 otherwise.
public enum ErfGELU: ElementwiseActivation {
    /// (Phi(x), exp(-x^2 / 2)) lane by lane.
    @usableFromInline @inline(__always)
    static func cdf(_ x: Vec) -> (phi: Vec, gauss: Vec) {
        let z = vmax(x, -x) * Vec(repeating: 0.707_106_781_186_547_5)
        let t = Vec(repeating: 1) / Vec(repeating: 1).addingProduct(z, Vec(repeating: 0.5))
        var p = Vec(repeating: 0.170_872_77)
        p = Vec(repeating: -0.822_152_23).addingProduct(p, t)
        p = Vec(repeating: 1.488_515_87).addingProduct(p, t)
        p = Vec(repeating: -1.135_203_98).addingProduct(p, t)
        p = Vec(repeating: 0.278_868_07).addingProduct(p, t)
        p = Vec(repeating: -0.186_288_06).addingProduct(p, t)
        p = Vec(repeating: 0.096_784_18).addingProduct(p, t)
        p = Vec(repeating: 0.374_091_96).addingProduct(p, t)
        p = Vec(repeating: 1.000_023_68).addingProduct(p, t)
        p = Vec(repeating: -1.265_512_23).addingProduct(p, t)
        let z2 = z * z
        let halfErfc = Vec(repeating: 0.5) * t * expVec(p - z2)
        let phi = (Vec(repeating: 1) - halfErfc).replacing(with: halfErfc, where: x .< Vec())
        return (phi, expVec(-z2))
    }

    @_transparent
    public static func forwardVec(_ x: Vec) -> Vec { x * cdf(x).phi }

    /// dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    @_transparent
    public static func derivativeVec(_ x: Vec) -> Vec {
        let (phi, gauss) = cdf(x)
        return phi.addingProduct(x * gauss, Vec(repeating: 0.398_942_280_401_432_7))
    }
}
