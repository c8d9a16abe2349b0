import Foundation
import Model
import Tensors
import TestSupport
import XCTest

/// Every layer's backward against central finite differences of L = sum(out * R), with R a
/// fixed random upstream gradient (TESTING.md tolerances). Sizes are deliberately not multiples
/// of the SIMD width so vector tails are exercised.
final class LayerGradientTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    func assertNoMismatch(_ mismatches: [GradientMismatch], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssert(mismatches.isEmpty, mismatches.prefix(5).map(\.description).joined(separator: "\n"), file: file, line: line)
    }

    func testEmbedding() {
        let b = 2, t = 5, d = 19, v = 11
        let wte = FloatBuffer(count: v * d), wpe = FloatBuffer(count: t * d)
        fillUniform(wte.pointer, wte.count, seed: 1)
        fillUniform(wpe.pointer, wpe.count, seed: 2)
        let tokens = randomTokens(b * t, vocab: v, seed: 3)
        let r = FloatBuffer(count: b * t * d), out = FloatBuffer(count: b * t * d)
        fillUniform(r.pointer, r.count, seed: 4)
        func loss() -> Double {
            Embedding.forward(out: out.pointer, tokens: tokens, wte: wte.pointer, wpe: wpe.pointer, batch: b, seq: t, width: d)
            return dot64(out.pointer, r.pointer, out.count)
        }
        let dwte = FloatBuffer(count: wte.count), dwpe = FloatBuffer(count: wpe.count)
        Embedding.backward(dwte: dwte.pointer, dwpe: dwpe.pointer, dout: r.pointer, tokens: tokens, batch: b, seq: t, width: d)
        assertNoMismatch(FiniteDifference.check("wte", values: wte.pointer, analytic: dwte.pointer, count: wte.count, samples: 60, seed: 5, loss: loss))
        assertNoMismatch(FiniteDifference.check("wpe", values: wpe.pointer, analytic: dwpe.pointer, count: wpe.count, samples: 40, seed: 6, loss: loss))
        // A token used twice accumulates both rows.
        XCTAssertNotEqual(dwte.toArray().filter { $0 != 0 }.count, 0)
    }

    func testLayerNorm() {
        let n = 7, d = 37
        let x = FloatBuffer(count: n * d), w = FloatBuffer(count: d), bias = FloatBuffer(count: d)
        fillUniform(x.pointer, x.count, scale: 2, seed: 1)
        fillUniform(w.pointer, d, scale: 0.5, seed: 2)
        for i in 0..<d { w[i] += 1 }
        fillUniform(bias.pointer, d, seed: 3)
        let r = FloatBuffer(count: n * d), out = FloatBuffer(count: n * d)
        let mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
        fillUniform(r.pointer, r.count, seed: 4)
        func loss() -> Double {
            LayerNorm.forward(out: out.pointer, mean: mean.pointer, rstd: rstd.pointer, x: x.pointer, weight: w.pointer,
                              bias: bias.pointer, rows: n, width: d, epsilon: 1e-5)
            return dot64(out.pointer, r.pointer, out.count)
        }
        _ = loss()
        let dx = FloatBuffer(count: x.count), dw = FloatBuffer(count: d), db = FloatBuffer(count: d)
        LayerNorm.backward(dx: dx.pointer, dweight: dw.pointer, dbias: db.pointer, dout: r.pointer, x: x.pointer,
                           weight: w.pointer, mean: mean.pointer, rstd: rstd.pointer, rows: n, width: d)
        assertNoMismatch(FiniteDifference.check("x", values: x.pointer, analytic: dx.pointer, count: x.count, samples: 60, seed: 5, loss: loss))
        assertNoMismatch(FiniteDifference.check("weight", values: w.pointer, analytic: dw.pointer, count: d, samples: 40, seed: 6, loss: loss))
        assertNoMismatch(FiniteDifference.check("bias", values: bias.pointer, analytic: db.pointer, count: d, samples: 40, seed: 7, loss: loss))
    }

    func testLinear() {
        let n = 9, i = 21, o = 35
        let x = FloatBuffer(count: n * i), w = FloatBuffer(count: o * i), bias = FloatBuffer(count: o)
        fillUniform(x.pointer, x.count, seed: 1)
        fillUniform(w.pointer, w.count, scale: 0.3, seed: 2)
        fillUniform(bias.pointer, o, seed: 3)
        let r = FloatBuffer(count: n * o), out = FloatBuffer(count: n * o)
        fillUniform(r.pointer, r.count, seed: 4)
        func loss() -> Double {
            Linear.forward(out: out.pointer, x: x.pointer, weight: w.pointer, bias: bias.pointer, rows: n, inFeatures: i, outFeatures: o)
            return dot64(out.pointer, r.pointer, out.count)
        }
        let dx = FloatBuffer(count: x.count), dw = FloatBuffer(count: w.count), db = FloatBuffer(count: o)
        Linear.backward(dx: dx.pointer, dweight: dw.pointer, dbias: db.pointer, dout: r.pointer, x: x.pointer,
                        weight: w.pointer, rows: n, inFeatures: i, outFeatures: o)
        assertNoMismatch(FiniteDifference.check("x", values: x.pointer, analytic: dx.pointer, count: x.count, seed: 5, loss: loss))
        assertNoMismatch(FiniteDifference.check("weight", values: w.pointer, analytic: dw.pointer, count: w.count, seed: 6, loss: loss))
        assertNoMismatch(FiniteDifference.check("bias", values: bias.pointer, analytic: db.pointer, count: o, seed: 7, loss: loss))
    }

    func checkAttention(seq: Int, dropout: Dropout?, batch: Int = 2, heads: Int = 3, headDim: Int = 5) {
        let shape = Attention.Shape(batch: batch, seq: seq, heads: heads, headDim: headDim)
        let n = shape.batch * shape.seq, a = shape.heads * shape.headDim
        let qkv = FloatBuffer(count: n * 3 * a)
        fillUniform(qkv.pointer, qkv.count, scale: 1.5, seed: 1)
        let r = FloatBuffer(count: n * a), out = FloatBuffer(count: n * a)
        fillUniform(r.pointer, r.count, seed: 2)
        let att = FloatBuffer(count: shape.batch * shape.heads * shape.seq * shape.seq)
        let scratch = FloatBuffer(count: Parallel.threads * Attention.scratchPerThread(seq: shape.seq, headDim: shape.headDim, precision: .fp32))
        func loss() -> Double {
            Attention.forward(out: .float(out.pointer), att: att.pointer, qkv: qkv.pointer, qkvCopy: nil, shape: shape, mask: .causal,
                              dropout: dropout, scratch: scratch.pointer)
            return dot64(out.pointer, r.pointer, out.count)
        }
        _ = loss()
        let dqkv = FloatBuffer(count: qkv.count)
        Attention.backward(dqkv: dqkv.pointer, dout: r.pointer, qkv: .fp32(qkv.pointer), att: att.pointer, shape: shape,
                           mask: .causal, dropout: dropout, scratch: scratch.pointer)
        assertNoMismatch(FiniteDifference.check("qkv", values: qkv.pointer, analytic: dqkv.pointer, count: qkv.count, samples: 120, seed: 3, loss: loss))
        // Rows sum to one over the causal prefix and are zero above the diagonal.
        for row in [0, shape.seq / 2, shape.seq - 1] {
            let p = att.pointer + row * shape.seq
            XCTAssertEqual((0...row).reduce(0.0) { $0 + Double(p[$1]) }, 1, accuracy: 1e-5)
            for j in (row + 1)..<shape.seq { XCTAssertEqual(p[j], 0) }
        }
        // Causality: the output at position 0 depends on nothing after it.
        let before = out[0]
        qkv[(shape.seq - 1) * 3 * a + 2 * a] += 1  // a value of the last token of sequence 0
        _ = loss()
        XCTAssertEqual(out[0], before)
    }

    func testAttention() { checkAttention(seq: 13, dropout: nil) }
    func testAttentionWithDropout() { checkAttention(seq: 13, dropout: Dropout(probability: 0.3, key: 99)) }
    /// Across several 64-row query blocks (T = 150, last block partial) the float32 gradient is
    /// compared with Float64 finite differences of a direct Float64 attention: at this length a
    /// float32 central difference with h = 1e-3 is dominated by rounding noise (every output row
    /// after a perturbed key changes), while a Float64 difference is exact to many digits.
    func checkAttentionAgainstFloat64(dropout: Dropout?) {
        let shape = Attention.Shape(batch: 2, seq: 150, heads: 2, headDim: 8)
        let t = shape.seq, a = shape.heads * shape.headDim, n = shape.batch * t
        let qkv = FloatBuffer(count: n * 3 * a), r = FloatBuffer(count: n * a)
        fillUniform(qkv.pointer, qkv.count, scale: 1.5, seed: 1)
        fillUniform(r.pointer, r.count, seed: 2)
        let out = FloatBuffer(count: n * a), att = FloatBuffer(count: shape.batch * shape.heads * t * t)
        let scratch = FloatBuffer(count: Parallel.threads * Attention.scratchPerThread(seq: t, headDim: shape.headDim, precision: .fp32))
        Attention.forward(out: .float(out.pointer), att: att.pointer, qkv: qkv.pointer, qkvCopy: nil, shape: shape, mask: .causal,
                              dropout: dropout, scratch: scratch.pointer)
        let dqkv = FloatBuffer(count: qkv.count)
        Attention.backward(dqkv: dqkv.pointer, dout: r.pointer, qkv: .fp32(qkv.pointer), att: att.pointer, shape: shape,
                           mask: .causal, dropout: dropout, scratch: scratch.pointer)

        var x = (0..<qkv.count).map { Double(qkv[$0]) }
        let upstream = (0..<r.count).map { Double(r[$0]) }
        // The float32 forward agrees with the Float64 one.
        let forward32 = dot64(out.pointer, r.pointer, out.count)
        XCTAssertEqual(forward32, Self.referenceLoss(x, upstream, shape, dropout), accuracy: 1e-4 * abs(forward32))
        var rng = Xoshiro256(seed: 3)
        var worst = 0.0
        for _ in 0..<60 {
            let i = rng.nextInt(below: x.count)
            let saved = x[i]
            x[i] = saved + 1e-5
            let plus = Self.referenceLoss(x, upstream, shape, dropout)
            x[i] = saved - 1e-5
            let minus = Self.referenceLoss(x, upstream, shape, dropout)
            x[i] = saved
            let reference = (plus - minus) / 2e-5
            let error = abs(Double(dqkv[i]) - reference) / (max(abs(reference), abs(Double(dqkv[i]))) + 1e-3)
            worst = max(worst, error)
        }
        XCTAssertLessThan(worst, 1e-3, "worst relative gradient error \(worst)")
    }

    func testAttentionAcrossQueryBlocks() { checkAttentionAgainstFloat64(dropout: nil) }
    func testAttentionAcrossQueryBlocksWithDropout() { checkAttentionAgainstFloat64(dropout: Dropout(probability: 0.2, key: 5)) }

    /// sum(attention(qkv) * upstream), directly from the definition, in Float64.
    static func referenceLoss(_ qkv: [Double], _ upstream: [Double], _ s: Attention.Shape, _ dropout: Dropout?) -> Double {
        let t = s.seq, hd = s.headDim, a = s.heads * hd, ld = 3 * a
        let scale = 1 / Double(hd).squareRoot()
        var total = 0.0
        for b in 0..<s.batch { for h in 0..<s.heads {
            let task = b * s.heads + h
            for i in 0..<t {
                let q = (b * t + i) * ld + h * hd
                var scores = [Double](repeating: 0, count: i + 1)
                for j in 0...i {
                    let k = (b * t + j) * ld + a + h * hd
                    scores[j] = (0..<hd).reduce(0.0) { $0 + qkv[q + $1] * qkv[k + $1] } * scale
                }
                let m = scores.max()!
                let e = scores.map { Foundation.exp($0 - m) }
                let sum = e.reduce(0, +)
                for d in 0..<hd {
                    var y = 0.0
                    for j in 0...i {
                        let keep = Double(dropout?.factor(at: task * t * t + i * t + j) ?? 1)
                        y += e[j] / sum * keep * qkv[(b * t + j) * ld + 2 * a + h * hd + d]
                    }
                    total += y * upstream[(b * t + i) * a + h * hd + d]
                }
            }
        } }
        return total
    }

    func testGELU() {
        let n = 53
        let x = FloatBuffer(count: n), r = FloatBuffer(count: n), out = FloatBuffer(count: n)
        fillUniform(x.pointer, n, scale: 4, seed: 1)
        fillUniform(r.pointer, n, seed: 2)
        func loss() -> Double {
            GELU.forward(out: out.pointer, x: x.pointer, count: n)
            return dot64(out.pointer, r.pointer, n)
        }
        let dx = FloatBuffer(count: n)
        GELU.backward(dx: dx.pointer, dout: r.pointer, x: x.pointer, count: n)
        assertNoMismatch(FiniteDifference.check("x", values: x.pointer, analytic: dx.pointer, count: n, samples: n, seed: 3, loss: loss))
        // Reference values of the tanh approximation (PyTorch gelu(approximate="tanh")).
        let probe = FloatBuffer([-3, -1, 0, 0.5, 2]), y = FloatBuffer(count: 5)
        GELU.forward(out: y.pointer, x: probe.pointer, count: 5)
        let expected: [Float] = [-0.0036373497, -0.15880801, 0, 0.34571401, 1.9545977]
        for k in 0..<5 { XCTAssertEqual(y[k], expected[k], accuracy: 2e-6) }
    }

    func testCrossEntropy() {
        let n = 6, v = 23
        let logits = FloatBuffer(count: n * v)
        fillUniform(logits.pointer, logits.count, scale: 3, seed: 1)
        var targets = randomTokens(n, vocab: v, seed: 2)
        targets[3] = -1
        let losses = FloatBuffer(count: n), lse = FloatBuffer(count: n)
        func loss() -> Double {
            let (sum, count) = CrossEntropy.forward(losses: losses.pointer, logSumExp: lse.pointer, logits: logits.pointer,
                                                    targets: targets, rows: n, vocab: v)
            return sum / Double(count)
        }
        let value = loss()
        // Against a direct Float64 computation.
        var reference = 0.0
        for row in 0..<n where targets[row] >= 0 {
            let l = (0..<v).map { Double(logits[row * v + $0]) }
            let m = l.max()!
            reference += m + log(l.map { exp($0 - m) }.reduce(0, +)) - l[Int(targets[row])]
        }
        XCTAssertEqual(value, reference / 5, accuracy: 1e-5)
        let grad = FloatBuffer(count: logits.count)
        grad.copy(from: logits)
        CrossEntropy.backward(logits: grad.pointer, logSumExp: lse.pointer, targets: targets, rows: n, vocab: v, scale: 1 / 5)
        assertNoMismatch(FiniteDifference.check("logits", values: logits.pointer, analytic: grad.pointer, count: logits.count, samples: 80, seed: 3, loss: loss))
        for j in 0..<v { XCTAssertEqual(grad[3 * v + j], 0) }
    }

    func testDropoutMaskRateAndScale() {
        let n = 100_000
        let x = FloatBuffer([Float](repeating: 1, count: n)), out = FloatBuffer(count: n)
        let drop = Dropout(probability: 0.25, key: 7)
        drop.apply(out: out.pointer, x: x.pointer, count: n)
        let kept = out.toArray().filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / Double(n), 0.75, accuracy: 0.01)
        XCTAssertEqual(kept[0], 1 / 0.75, accuracy: 1e-6)
        // Same key, same mask; different key, different mask.
        let again = FloatBuffer(count: n), other = FloatBuffer(count: n)
        drop.apply(out: again.pointer, x: x.pointer, count: n)
        Dropout(probability: 0.25, key: 8).apply(out: other.pointer, x: x.pointer, count: n)
        XCTAssertTrue(bitIdentical(out.pointer, again.pointer, n))
        XCTAssertFalse(bitIdentical(out.pointer, other.pointer, n))
    }
}
