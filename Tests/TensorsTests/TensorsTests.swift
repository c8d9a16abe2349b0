import Foundation
import Tensors
import TestSupport
import XCTest

final class ChecksumTests: XCTestCase {
    /// Reference digests from the Python `xxhash` package (xxhash.xxh64(data, seed).intdigest()).
    func testXXH64MatchesReference() {
        let cases: [([UInt8], UInt64, UInt64)] = [
            ([], 0xEF46_DB37_51D8_E999, 0x98B1_582B_0977_E704),
            (Array("a".utf8), 0xD24E_C4F1_A98C_6E5B, 0x88E4_FE59_ADF7_B0CC),
            (Array("abc".utf8), 0x44BC_2CF5_AD77_0999, 0x13C1_D910_7027_70E6),
            (Array((0..<768).map { UInt8($0 % 256) }), 0x8E03_C838_C596_036F, 0x5A08_DEAD_05DF_1080),
            ([UInt8](repeating: 120, count: 31), 0x60DD_0D01_083B_99F0, 0xE82D_E6C8_21DF_41DE),
            ([UInt8](repeating: 120, count: 32), 0xE2DF_261F_C2EC_30EB, 0x1209_BCC9_FA7C_79F8),
            ([UInt8](repeating: 120, count: 33), 0xB3FA_465F_5542_08A6, 0xD9D0_286E_C81D_B108),
            (Array("Nobody inspects the spammish repetition".utf8), 0xFBCE_A83C_8A37_8BF1, 0x4458_2824_CA10_18B5),
        ]
        for (bytes, expected, expectedSeeded) in cases {
            bytes.withUnsafeBytes { raw in
                XCTAssertEqual(XXH64.hash(raw), expected, "length \(bytes.count)")
                XCTAssertEqual(XXH64.hash(raw, seed: 42), expectedSeeded, "length \(bytes.count), seed 42")
            }
        }
    }

    /// Feeding the same bytes in uneven pieces gives the one-shot digest.
    func testXXH64Streaming() {
        let bytes = (0..<1000).map { UInt8(($0 * 7) % 251) }
        let whole = bytes.withUnsafeBytes { XXH64.hash($0) }
        for pieces in [[1, 999], [31, 1, 32, 936], [5, 5, 5, 985], [500, 500]] {
            var h = XXH64()
            var start = 0
            bytes.withUnsafeBytes { raw in
                for length in pieces {
                    h.update(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]))
                    start += length
                }
            }
            XCTAssertEqual(h.finalize(), whole, "pieces \(pieces)")
        }
    }
}

final class VectorMathTests: XCTestCase {
    func testExpAccuracy() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let got = Double(fastExp(x)), want = Foundation.exp(Double(x))
            worst = max(worst, abs(got - want) / want)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 5e-7)
        XCTAssertEqual(fastExp(0), 1)
        XCTAssertEqual(fastExp(-Float.infinity), fastExp(-1000))
        XCTAssertLessThan(fastExp(-1000), 1e-37)
    }

    func testTanhAccuracy() {
        var worst: Double = 0
        var x: Float = -12
        while x < 12 {
            worst = max(worst, abs(Double(fastTanh(x)) - Foundation.tanh(Double(x))))
            x += 0.0031
        }
        XCTAssertLessThan(worst, 3e-7)
        XCTAssertEqual(fastTanh(50), 1)
        XCTAssertEqual(fastTanh(-50), -1)
    }
}

final class GemmTests: XCTestCase {
    func naive(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Float], _ b: [Float]) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = ta ? a[p * m + i] : a[i * k + p]
                let bv = tb ? b[j * k + p] : b[p * n + j]
                s += Double(av) * Double(bv)
            }
            c[i * n + j] = s
        } }
        return c
    }

    /// All four transpose cases, split by rows and by columns, against a Float64 product; and the
    /// same bits with 1 and 2 threads.
    func testGemmMatchesNaiveAndIsThreadInvariant() {
        // 200 x 70 x 90 and 70 x 300 x 64 are above OpenBLAS's small-matrix limit but one of
        // their 64-aligned blocks would be below it: kept whole, as the SkylakeX-family kernels
        // would otherwise round that block differently (seen on Zen 4 with the Cooperlake kernel).
        for (m, n, k) in [(200, 70, 90), (70, 300, 64), (5, 7, 3)] {
            for ta in [false, true] { for tb in [false, true] {
                var rng = Xoshiro256(seed: UInt64(m * n + k))
                let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }
                let b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
                let want = naive(ta, tb, m, n, k, a, b)
                var results: [[Float]] = []
                for threads in [1, 2] {
                    Parallel.configure(threads: threads)
                    var c = [Float](repeating: 1, count: m * n)
                    gemm(transA: ta, transB: tb, m: m, n: n, k: k, a, lda: ta ? m : k, b, ldb: tb ? k : n, beta: 0, &c, ldc: n)
                    results.append(c)
                }
                var worst = 0.0
                for i in 0..<(m * n) { worst = max(worst, abs(Double(results[1][i]) - want[i])) }
                XCTAssertLessThan(worst, 1e-4, "m\(m) n\(n) k\(k) ta\(ta) tb\(tb)")
                XCTAssertEqual(results[0], results[1], "thread count changed bits: m\(m) n\(n) k\(k) ta\(ta) tb\(tb)")
            } }
        }
    }

    func testSumOfSquaresIsThreadInvariant() {
        let n = 200_003
        let x = FloatBuffer(count: n)
        fillUniform(x.pointer, n, seed: 1)
        Parallel.configure(threads: 1)
        let one = sumOfSquares(x.pointer, count: n)
        Parallel.configure(threads: 2)
        let two = sumOfSquares(x.pointer, count: n)
        XCTAssertEqual(one.bitPattern, two.bitPattern)
        let exact = (0..<n).reduce(0.0) { $0 + Double(x[$1]) * Double(x[$1]) }
        XCTAssertEqual(one, exact, accuracy: 1e-9 * exact)
    }

    func testParallelRangesCoverEverythingOnce() {
        Parallel.configure(threads: 2)
        for (count, grain) in [(0, 1), (1, 1), (17, 16), (1000, 64), (1001, 7)] {
            let seen = Buffer<Int32>(count: max(count, 1))
            Parallel.forRanges(count, grain: grain) { worker, range in
                XCTAssertLessThan(worker, Parallel.threads)
                if range.lowerBound % grain != 0 { XCTFail("range \(range) not aligned to \(grain)") }
                for i in range { seen[i] += 1 }
            }
            for i in 0..<count { XCTAssertEqual(seen[i], 1, "count \(count) index \(i)") }
        }
    }
}

final class WorkerPoolTests: XCTestCase {
    /// A parallel region inside another runs inline (no deadlock), thousands of short regions in
    /// a row all complete (quickly, also with more threads than this machine's cores: spinning
    /// threads yield), and the pool survives being reconfigured.
    func testNestedRegionsManyRegionsAndReconfiguration() {
        for threads in [2, 3, 1, 2] {
            Parallel.configure(threads: threads)
            let seen = Buffer<Int32>(count: 64 * 64)
            Parallel.forRanges(64) { _, outer in
                for i in outer {
                    Parallel.forRanges(64) { _, inner in
                        for j in inner { seen[i * 64 + j] += 1 }
                    }
                }
            }
            XCTAssertTrue((0..<seen.count).allSatisfy { seen[$0] == 1 })
            let counter = Buffer<Int32>(count: Parallel.threads)
            for _ in 0..<5000 {
                Parallel.forRanges(Parallel.threads) { worker, range in counter[worker] += Int32(range.count) }
            }
            XCTAssertEqual((0..<Parallel.threads).reduce(0) { $0 + Int(counter[$1]) }, 5000 * Parallel.threads)
        }
    }
}

final class RandomTests: XCTestCase {
    func testXoshiroIsDeterministicAndUniform() {
        var a = Xoshiro256(seed: 5), b = Xoshiro256(seed: 5)
        for _ in 0..<100 { XCTAssertEqual(a.next(), b.next()) }
        var sum = 0.0, squares = 0.0
        let n = 100_000
        for _ in 0..<n { let z = a.nextNormal(); sum += z; squares += z * z }
        XCTAssertEqual(sum / Double(n), 0, accuracy: 0.02)
        XCTAssertEqual(squares / Double(n), 1, accuracy: 0.02)
    }
}
