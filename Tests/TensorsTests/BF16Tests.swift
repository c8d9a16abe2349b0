import Foundation
import Tensors
import TestSupport
import XCTest

/// float32 -> bf16 conversion and bf16 products (../shared/spec/TESTING.md, "bf16 mixed precision").
final class BF16ConversionTests: XCTestCase {
    /// An independent reference on the bits: keep the upper half, add one when the dropped half is
    /// above 0x8000, or exactly 0x8000 with an odd upper half; NaN becomes the quiet NaN with the
    /// same sign and upper payload bits.
    static func reference(_ bits: UInt32) -> UInt16 {
        let exponent = (bits >> 23) & 0xFF, mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF && mantissa != 0 { return UInt16(bits >> 16) | 0x0040 }
        let upper = bits >> 16, dropped = bits & 0xFFFF
        let roundUp = dropped > 0x8000 || (dropped == 0x8000 && upper & 1 == 1)
        return UInt16(roundUp ? upper + 1 : upper)  // a carry into the exponent gives the next binade, or inf
    }

    /// Bit patterns to test: every sign and exponent with dropped halves around the rounding
    /// boundaries and odd and even kept halves, plus 2^20 random patterns.
    static var samples: [UInt32] {
        var patterns: [UInt32] = []
        for signExponent in 0..<UInt32(512) {
            for keptMantissa: UInt32 in [0, 1, 0x2A, 0x7E, 0x7F] {
                for dropped: UInt32 in [0, 1, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF] {
                    patterns.append(signExponent << 23 | keptMantissa << 16 | dropped)
                }
            }
        }
        var rng = Xoshiro256(seed: 20)
        for _ in 0..<(1 << 20) { patterns.append(UInt32(truncatingIfNeeded: rng.next())) }
        return patterns
    }

    func testConversionMatchesIntegerReference() {
        let patterns = Self.samples
        let floats = FloatBuffer(patterns.map { Float(bitPattern: $0) })
        let halves = Buffer<BF16>(count: patterns.count)
        BF16Convert.convert(floats.pointer, halves.pointer, count: patterns.count)
        var mismatches = 0
        for (i, bits) in patterns.enumerated() where halves[i].bits != Self.reference(bits) {
            if mismatches < 5 { XCTFail(String(format: "%08x -> %04x, reference %04x", bits, halves[i].bits, Self.reference(bits))) }
            mismatches += 1
        }
        XCTAssertEqual(mismatches, 0)
        // The scalar initializer agrees with the bulk (vector) conversion.
        for i in stride(from: 0, to: patterns.count, by: 97) { XCTAssertEqual(BF16(floats[i]).bits, halves[i].bits) }
    }

    /// By value: a finite input becomes the nearer of its two bf16 neighbours, the even one on a
    /// tie (or inf past the largest bf16), checked in Float64.
    func testConversionIsNearestEven() {
        var rng = Xoshiro256(seed: 21)
        for _ in 0..<200_000 {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let x = Float(bitPattern: bits)
            guard x.isFinite else { continue }
            let got = BF16(x)
            let below = Float(bitPattern: bits & 0xFFFF_0000), above = Float(bitPattern: (bits & 0xFFFF_0000) &+ 0x10000)
            // Past the largest bf16 the upper neighbour is 2^128 as if the exponent went on (IEEE overflow).
            let aboveValue = above.isInfinite ? (x < 0 ? -0x1p128 : 0x1p128) : Double(above)
            let dBelow = abs(Double(x) - Double(below)), dAbove = abs(Double(x) - aboveValue)
            let expected = dBelow < dAbove || (dBelow == dAbove && (bits >> 16) & 1 == 0) ? below : above
            XCTAssertEqual(got.float.bitPattern, expected.bitPattern, String(format: "%08x", bits))
        }
    }

    func testSpecialValues() {
        let cases: [(UInt32, UInt16, String)] = [
            (0x7F80_0000, 0x7F80, "+inf stays"), (0xFF80_0000, 0xFF80, "-inf stays"),
            (0x7F80_0001, 0x7FC0, "signalling NaN becomes quiet"), (0xFFC0_1234, 0xFFC0, "negative NaN keeps its sign"),
            (0x7FFF_FFFF, 0x7FFF, "NaN with all payload bits"), (0x7F7F_FFFF, 0x7F80, "largest float rounds to inf"),
            (0x7F7F_7FFF, 0x7F7F, "just below the tie stays finite"), (0x0000_0000, 0x0000, "+0"), (0x8000_0000, 0x8000, "-0"),
            (0x0000_C000, 0x0001, "subnormal rounds up to the smallest bf16 subnormal, not flushed"),
            (0x0000_8000, 0x0000, "subnormal tie to even (0)"), (0x0001_8000, 0x0002, "subnormal tie to even (2)"),
            (0x0040_0000, 0x0040, "subnormal kept exactly"), (0x807F_FFFF, 0x8080, "largest negative subnormal rounds to the smallest normal"),
        ]
        for (bits, expected, why) in cases {
            XCTAssertEqual(BF16(Float(bitPattern: bits)).bits, expected, why)
        }
        XCTAssertTrue(BF16(Float.nan).float.isNaN)
    }

    /// Widening is exact, and the in-place conversion leaves each row's bf16 values at its start.
    func testWideningAndInPlaceConversion() {
        let rows = 5, cols = 37
        let x = FloatBuffer(count: rows * cols)
        fillUniform(x.pointer, x.count, scale: 3, seed: 22)
        let halves = Buffer<BF16>(count: x.count), wide = FloatBuffer(count: x.count)
        BF16Convert.convert(x.pointer, halves.pointer, count: x.count)
        BF16Convert.widenSerial(halves.pointer, wide.pointer, count: x.count)
        for i in 0..<x.count { XCTAssertEqual(wide[i], halves[i].float) }
        BF16Convert.inPlace(x.pointer, rows: rows, cols: cols)
        let raw = UnsafeRawPointer(x.pointer)
        for r in 0..<rows {
            for c in 0..<cols {
                XCTAssertEqual(raw.load(fromByteOffset: 2 * (r * 2 * cols + c), as: UInt16.self), halves[r * cols + c].bits)
            }
        }
    }
}

final class BF16ProductTests: XCTestCase {
    /// TESTING.md: |C - C_ref| <= (2^-7 + 2^-15 + K 2^-23) (|A| |B|)_ij + 1e-6 against a Float64
    /// product of the float32 inputs (plus float32 rounding of beta C when beta is 1).
    func checkProduct(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float, seed: UInt64) {
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        fillUniform(a.pointer, a.count, scale: 2, seed: seed)
        fillUniform(b.pointer, b.count, scale: 2, seed: seed + 1)
        fillUniform(c.pointer, c.count, seed: seed + 2)
        let c0 = c.toArray()
        let a16 = Buffer<BF16>(count: a.count), b16 = Buffer<BF16>(count: b.count)
        BF16Convert.convert(a.pointer, a16.pointer, count: a.count)
        BF16Convert.convert(b.pointer, b16.pointer, count: b.count)
        let lda = transA ? m : k, ldb = transB ? k : n
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, .bf16(a16.pointer), lda: lda,
             .bf16(b16.pointer), ldb: ldb, beta: beta, c.pointer, ldc: n)
        let gamma = pow(2.0, -7) + pow(2.0, -15) + Double(k) * pow(2.0, -23)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let x = Double(transA ? a[p * lda + i] : a[i * lda + p]), y = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                    exact += x * y
                    magnitude += abs(x * y)
                }
                let reference = Double(alpha) * exact + Double(beta) * Double(c0[i * n + j])
                let bound = gamma * abs(Double(alpha)) * magnitude + pow(2.0, -23) * abs(Double(beta) * Double(c0[i * n + j])) + 1e-6
                let error = abs(Double(c[i * n + j]) - reference)
                worst = max(worst, error / bound)
                if error > bound {
                    XCTFail("\(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k) at (\(i), \(j)): error \(error) > bound \(bound)")
                    return
                }
            }
        }
        // The bound is not vacuous: bf16 rounding is visible.
        XCTAssertGreaterThan(worst, 1e-3, "errors far below the bound: were the operands really bf16?")
    }

    func testProductsWithinBound() {
        checkProduct(transA: false, transB: true, m: 200, n: 300, k: 70, alpha: 1, beta: 0, seed: 1)   // tiled
        checkProduct(transA: false, transB: false, m: 130, n: 64, k: 257, alpha: 1, beta: 1, seed: 4)
        checkProduct(transA: true, transB: false, m: 333, n: 48, k: 129, alpha: 1, beta: 1, seed: 7)  // tiled
        checkProduct(transA: false, transB: true, m: 17, n: 23, k: 9, alpha: 0.125, beta: 0, seed: 10)
        checkProduct(transA: true, transB: false, m: 64, n: 16, k: 64, alpha: 0.125, beta: 1, seed: 13)
    }

    /// The tiles depend on the shape only: 1 and 2 threads give the same bits.
    func testProductsBitIdenticalAcrossThreadCounts() {
        let m = 1000, n = 384, k = 300
        let a = Buffer<BF16>(count: m * k), b = Buffer<BF16>(count: k * n)
        let x = FloatBuffer(count: max(m * k, k * n))
        fillUniform(x.pointer, x.count, seed: 30)
        BF16Convert.convert(x.pointer, a.pointer, count: m * k)
        BF16Convert.convert(x.pointer + 7, b.pointer, count: k * n)
        let saved = Parallel.threads
        defer { Parallel.configure(threads: saved) }
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            Parallel.configure(threads: threads)
            for (ta, tb) in [(false, false), (false, true), (true, false)] {
                let c = FloatBuffer(count: m * n)
                gemm(transA: ta, transB: tb, m: m, n: n, k: k, .bf16(a.pointer), lda: ta ? m : k,
                     .bf16(b.pointer), ldb: tb ? k : n, beta: 0, c.pointer, ldc: n)
                results.append(c.toArray())
            }
        }
        XCTAssertEqual(results[0], results[3]); XCTAssertEqual(results[0], results[6])
        XCTAssertEqual(results[1], results[4]); XCTAssertEqual(results[1], results[7])
        XCTAssertEqual(results[2], results[5]); XCTAssertEqual(results[2], results[8])
    }

    /// Subnormal bf16 operands: the AVX512_BF16 dot product (oneDNN's kernel) treats them as
    /// zero; the widened OpenBLAS path keeps them. The test asserts the behaviour of the path
    /// this CPU takes (GemmRules).
    func testSubnormalOperandsOnThisPath() {
        let tiny = BF16(Float(bitPattern: 0x0040_0000))  // 2^-127, a bf16 subnormal, kept by the conversion
        XCTAssertEqual(tiny.bits, 0x0040)
        let big = BF16(Float(sign: .plus, exponent: 100, significand: 1))
        let a = Buffer<BF16>([tiny, tiny]), b = Buffer<BF16>([big, big])
        let c = FloatBuffer(count: 1)
        gemm(transA: false, transB: false, m: 1, n: 1, k: 2, .bf16(a.pointer), lda: 2, .bf16(b.pointer), ldb: 1,
             beta: 0, c.pointer, ldc: 1)
        switch GemmRules.library(for: .bf16) {
        case .oneDNN: XCTAssertEqual(c[0], 0, "AVX512_BF16 flushes subnormal operands to zero")
        default: XCTAssertEqual(c[0], 2 * Float(sign: .plus, exponent: -27, significand: 1), "widened operands keep subnormals")
        }
    }
}
