/// Seeded random numbers. Two kinds:
/// - `Xoshiro256`: a sequential generator (initialization, data order); its state is a value
///   that checkpoints save, so a resumed run continues the same stream.
/// - `CounterHash`: a stateless hash of (key, index), for dropout masks: any element's draw can be
///   computed by any thread, in forward and again in backward, with no stored mask.

/// SplitMix64, used to expand a seed into generator state and to derive keys.
public struct SplitMix64 {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Mixes any number of values into one 64-bit key.
    public static func mix(_ values: UInt64...) -> UInt64 {
        var s = SplitMix64(seed: 0x6A09_E667_F3BC_C908)
        var out: UInt64 = 0
        for v in values {
            s.state ^= v
            out = s.next()
        }
        return out
    }
}

/// xoshiro256** (Blackman and Vigna): fast, 256-bit state, Codable for checkpoints.
public struct Xoshiro256: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var s0, s1, s2, s3: UInt64

    public init(seed: UInt64) {
        var sm = SplitMix64(seed: seed)
        (s0, s1, s2, s3) = (sm.next(), sm.next(), sm.next(), sm.next())
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform integer in 0..<bound (Lemire's method, unbiased).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0)
        return Int(truncatingIfNeeded: next(upperBound: UInt64(bound)))
    }

    /// Standard normal via Box-Muller (one value per call, so the state stays a plain value).
    public mutating func nextNormal() -> Double {
        let u1 = max(nextDouble(), 0x1p-60)
        let u2 = nextDouble()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }
}

/// Stateless 32-bit hash of (key, index) to a uniform integer, vectorizable.
public enum CounterHash {
    /// "lowbias32" integer finalizer (Wellons): good avalanche with two multiplies.
    @inlinable @inline(__always)
    public static func mix(_ x: UInt32) -> UInt32 {
        var x = x
        x ^= x >> 16
        x &*= 0x7FEB_352D
        x ^= x >> 15
        x &*= 0x846C_A68B
        x ^= x >> 16
        return x
    }

    @inlinable @inline(__always)
    public static func mix(_ x: SIMD16<UInt32>) -> SIMD16<UInt32> {
        var x = x
        x ^= x &>> 16
        x &*= 0x7FEB_352D
        x ^= x &>> 15
        x &*= 0x846C_A68B
        x ^= x &>> 16
        return x
    }

    /// Uniform 32-bit value for element `index` of the stream named by `key`.
    @inlinable @inline(__always)
    public static func value(key: UInt32, index: UInt32) -> UInt32 { mix(index ^ mix(key)) }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
