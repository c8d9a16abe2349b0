/// SIMD elementwise math used by the kernels. Everything here is `@inlinable`: the kernels live
/// in other modules, and a vector helper that is called instead of inlined costs more than the
/// arithmetic it does.
/// `Vec` is 16 floats: two AVX2 registers or one
/// AVX-512 register. Loops process `Vec.scalarCount` elements at a time; a remainder is loaded
/// into a zero-padded vector (`loadPartial`) and goes through the same vector code, so a value
/// never depends on whether it fell in the body or the tail of a loop.
public typealias Vec = SIMD16<Float>

/// Floats per `Vec`.
@inlinable public var vecWidth: Int { 16 }

@inlinable @inline(__always)
public func loadVec(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}

@inlinable @inline(__always)
public func storeVec(_ v: Vec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self)
}

/// Loads `count` (< 16) floats into the low lanes of a vector filled with `fill`.
@inlinable @inline(__always)
public func loadPartial(_ p: UnsafePointer<Float>, _ count: Int, fill: Float = 0) -> Vec {
    var v = Vec(repeating: fill)
    for i in 0..<count { v[i] = p[i] }
    return v
}

/// Stores the low `count` (< 16) lanes of `v`.
@inlinable @inline(__always)
public func storePartial(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
    for i in 0..<count { p[i] = v[i] }
}

/// Lane-wise maximum and minimum. (The standard library's generic `pointwiseMax` and
/// `clamped` are not inlined across modules and cost a call per vector.)
@inlinable @inline(__always)
public func vmax(_ a: Vec, _ b: Vec) -> Vec { a.replacing(with: b, where: a .< b) }

@inlinable @inline(__always)
public func vmin(_ a: Vec, _ b: Vec) -> Vec { a.replacing(with: b, where: b .< a) }

/// exp(x): Cody-Waite range reduction x = n ln2 + r with |r| <= ln2/2, then a degree-6
/// polynomial for e^r (Cephes expf coefficients; relative error about 2e-7). Inputs are clamped
/// to [-87.3, 88]: below, the result is the smallest normal float instead of 0, which no caller
/// can tell apart from zero.
/// `@_transparent` rather than `@inline(__always)`: the optimizer did not inline the latter into
/// callers in other modules (softmax, cross-entropy, BERT's GELU each called it once per 16
/// values, with the vectors passed through memory; the erf GELU ran 3x slower for it).
@_transparent
public func expVec(_ x: Vec) -> Vec {
    let xc = vmin(vmax(x, Vec(repeating: -87.336_54)), Vec(repeating: 88.0))
    // Adding 1.5 * 2^23 rounds x * log2(e) to an integer held in the low mantissa bits.
    let magic = Vec(repeating: 12_582_912.0)
    let shifted = magic.addingProduct(xc, Vec(repeating: 1.442_695_04))
    let n = shifted - magic
    var r = xc.addingProduct(n, Vec(repeating: -0.693_359_375))
    r = r.addingProduct(n, Vec(repeating: 2.121_944_4e-4))
    var p = Vec(repeating: 1.987_569_150_0e-4)
    p = Vec(repeating: 1.398_199_950_7e-3).addingProduct(p, r)
    p = Vec(repeating: 8.333_451_907_3e-3).addingProduct(p, r)
    p = Vec(repeating: 4.166_579_589_4e-2).addingProduct(p, r)
    p = Vec(repeating: 1.666_666_545_9e-1).addingProduct(p, r)
    p = Vec(repeating: 5.000_000_120_1e-1).addingProduct(p, r)
    let er = (r + Vec(repeating: 1)).addingProduct(p, r * r)
    // 2^n: the integer n sits in the low bits of `shifted`, offset by the pattern of 1.5 * 2^23.
    let bits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((bits &+ 127) &<< 23, to: Vec.self)
    return er * scale
}

/// tanh(x) = 1 - 2 / (exp(2x) + 1); saturates correctly at both ends. `@_transparent` as `expVec`.
@_transparent
public func tanhVec(_ x: Vec) -> Vec {
    let e = expVec(x + x)
    return Vec(repeating: 1) - Vec(repeating: 2) / (e + Vec(repeating: 1))
}

/// Sum of all lanes in a fixed order (pairwise), so a horizontal sum is reproducible.
@inlinable @inline(__always)
public func horizontalSum(_ v: Vec) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

@inlinable @inline(__always)
public func horizontalMax(_ v: Vec) -> Float {
    let a = v.lowHalf.replacing(with: v.highHalf, where: v.lowHalf .< v.highHalf)
    let b = a.lowHalf.replacing(with: a.highHalf, where: a.lowHalf .< a.highHalf)
    let c = b.lowHalf.replacing(with: b.highHalf, where: b.lowHalf .< b.highHalf)
    return max(c[0], c[1])
}

/// Scalar exp and tanh through the vector code, for the rare scalar caller.
@inlinable public func fastExp(_ x: Float) -> Float { expVec(Vec(repeating: x))[0] }
@inlinable public func fastTanh(_ x: Float) -> Float { tanhVec(Vec(repeating: x))[0] }
