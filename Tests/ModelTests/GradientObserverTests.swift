import Foundation
import Model
import Tensors
import TestSupport
import XCTest

/// The hook data-parallel overlap relies on: `GPT.backward(observer:)` reports every parameter
/// once, at a point after which backward no longer writes it, and hands over the tied
/// embedding's lookup gradient when asked.
final class GradientObserverTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    /// Records reports; checks at each report that the reported range equals its final value
    /// (`expected`), i.e. backward has finished writing it; optionally takes the lookup gradient
    /// into one row per position.
    final class Recorder: GradientObserver {
        let gradients: FloatBuffer
        let expected: FloatBuffer?
        let take: Bool
        var ranges: [Range<Int>] = []
        var finalWhenReported = true
        var taken: FloatBuffer?
        var rows: Buffer<Int32>?
        var tokens: [Int32] = []
        var offset = -1

        init(gradients: FloatBuffer, expected: FloatBuffer?, take: Bool) {
            self.gradients = gradients
            self.expected = expected
            self.take = take
        }

        func gradientsFinal(_ range: Range<Int>) {
            ranges.append(range)
            if let expected, !bitIdentical(gradients.pointer + range.lowerBound, expected.pointer + range.lowerBound, range.count) {
                finalWhenReported = false
            }
        }

        func takeTokenEmbeddingGradient(tokens: UnsafePointer<Int32>, count: Int, rows: Int, width: Int,
                                        offset: Int) -> TokenEmbeddingGradient? {
            guard take else { return nil }
            self.tokens = Array(UnsafeBufferPointer(start: tokens, count: count))
            self.offset = offset
            // Garbage in the destination would show: it must be zeroed by the observer, here it is.
            let taken = FloatBuffer(count: count * width)
            let positions = Buffer<Int32>((0..<count).map { Int32($0) })
            self.taken = taken
            self.rows = positions
            return TokenEmbeddingGradient(gradient: taken.pointer, rows: UnsafePointer(positions.pointer))
        }
    }

    func makeModel(dropout: Float) throws -> (GPT, [Int32], [Int32], Int, Int) {
        let config = ModelConfig(layers: 3, width: 32, heads: 2, vocab: 50, context: 16, dropout: dropout)
        let model = try GPT(config: config, seed: 5)
        let b = 3, t = 16
        return (model, randomTokens(b * t, vocab: config.vocab, seed: 6), randomTokens(b * t, vocab: config.vocab, seed: 7), b, t)
    }

    func plainGradients(_ model: GPT, _ tokens: [Int32], _ targets: [Int32], _ b: Int, _ t: Int) -> FloatBuffer {
        model.zeroGradients()
        model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 9)
        model.backward()
        let copy = FloatBuffer(count: model.parameterCount)
        copy.copy(from: model.gradients)
        return copy
    }

    /// With the lookup gradient taken: the token embedding is reported first (right after the
    /// head), then the final norm and blocks L-1..0 (tensor by tensor) in order towards the
    /// buffer's start, then the position embedding; the ranges tile the buffer; each is final when reported. Every
    /// gradient but the token embedding's is bit-identical to plain backward, and the head part
    /// plus the taken rows scattered by token equals plain backward's token-embedding gradient.
    func testReportsEveryRangeOnceAndTakesTheLookupGradient() throws {
        for dropout: Float in [0, 0.2] {
            let (model, tokens, targets, b, t) = try makeModel(dropout: dropout)
            let plain = plainGradients(model, tokens, targets, b, t)
            let layout = model.layout, d = model.config.width, v = model.config.vocab

            // First pass: record the final values of the redirected backward.
            let first = Recorder(gradients: model.gradients, expected: nil, take: true)
            model.zeroGradients()
            model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 9)
            model.backward(observer: first)
            let final = FloatBuffer(count: model.parameterCount)
            final.copy(from: model.gradients)
            // Second pass: check each range at its report against those final values.
            let recorder = Recorder(gradients: model.gradients, expected: final, take: true)
            model.zeroGradients()
            model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 9)
            model.backward(observer: recorder)
            XCTAssertTrue(recorder.finalWhenReported, "a range was written after it was reported (dropout \(dropout))")

            let wte = layout.tokenEmbedding..<layout.positionEmbedding
            var expectedRanges = [wte, layout.finalNormWeight..<model.parameterCount]
            for l in stride(from: model.config.layers - 1, through: 0, by: -1) {
                // Each tensor as soon as it is final, in backward's order.
                let w = layout.blocks[l], end = l + 1 < model.config.layers ? layout.blocks[l + 1].ln1Weight : layout.finalNormWeight
                expectedRanges += [w.fcProjWeight..<end, w.fcWeight..<w.fcProjWeight, w.ln2Weight..<w.fcWeight,
                                   w.attnProjWeight..<w.ln2Weight, w.qkvWeight..<w.attnProjWeight, w.ln1Weight..<w.qkvWeight]
            }
            expectedRanges.append(layout.positionEmbedding..<layout.blocks[0].ln1Weight)
            XCTAssertEqual(recorder.ranges, expectedRanges)
            XCTAssertEqual(recorder.ranges.map(\.count).reduce(0, +), model.parameterCount)
            XCTAssertEqual(recorder.tokens, tokens)
            XCTAssertEqual(recorder.offset, layout.tokenEmbedding)

            let rest = layout.positionEmbedding..<model.parameterCount
            XCTAssertTrue(bitIdentical(model.gradients.pointer + rest.lowerBound, plain.pointer + rest.lowerBound, rest.count),
                          "gradients outside the token embedding differ from plain backward")
            // Head part + taken rows == plain token-embedding gradient (up to summation order).
            let combined = [Float](unsafeUninitializedCapacity: v * d) { out, n in
                for i in 0..<(v * d) { out[i] = model.gradients[i] }
                let taken = recorder.taken!
                for (p, token) in tokens.enumerated() {
                    for c in 0..<d { out[Int(token) * d + c] += taken[p * d + c] }
                }
                n = v * d
            }
            var worst: Float = 0, scale: Float = 0
            for i in 0..<(v * d) {
                worst = max(worst, abs(combined[i] - plain[i]))
                scale = max(scale, abs(plain[i]))
            }
            XCTAssertGreaterThan(scale, 0)
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "token-embedding gradient off by \(worst) (largest \(scale))")
            // The taken rows are the lookup's gradient: without them the head part alone differs.
            var lookup: Float = 0
            for i in 0..<(v * d) { lookup = max(lookup, abs(model.gradients[i] - plain[i])) }
            XCTAssertGreaterThan(lookup, 100 * worst)
        }
    }

    /// An observer that does not take the lookup gradient changes nothing: gradients are
    /// bit-identical to plain backward, and the token embedding is reported with the positions,
    /// last.
    func testObserverThatTakesNothingLeavesGradientsUnchanged() throws {
        let (model, tokens, targets, b, t) = try makeModel(dropout: 0.1)
        let plain = plainGradients(model, tokens, targets, b, t)
        let recorder = Recorder(gradients: model.gradients, expected: plain, take: false)
        model.zeroGradients()
        model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 9)
        model.backward(observer: recorder)
        XCTAssertTrue(bitIdentical(model.gradients.pointer, plain.pointer, model.parameterCount))
        XCTAssertTrue(recorder.finalWhenReported)
        XCTAssertEqual(recorder.ranges.first, model.layout.finalNormWeight..<model.parameterCount)
        XCTAssertEqual(recorder.ranges.last, model.layout.tokenEmbedding..<model.layout.blocks[0].ln1Weight)
        XCTAssertEqual(recorder.ranges.map(\.count).reduce(0, +), model.parameterCount)
    }

    /// BERT reports the MLM head (without the tied projection) and then blocks L-1..0 tensor by
    /// tensor, each final when reported (the last block pruned to the masked rows, dropout on); it takes
    /// nothing, so its gradients are bit-identical to plain backward and the embeddings, left
    /// unreported, are final when backward returns.
    func testBERTReportsHeadAndBlocksFinal() throws {
        var config = ModelConfig(architecture: .bert, layers: 3, width: 32, heads: 2, vocab: 50, context: 16, dropout: 0.1)
        config.padToken = 1
        let model = try BERT(config: config, seed: 5)
        let b = 3, t = 16
        let tokens = randomTokens(b * t, vocab: config.vocab, seed: 6)
        // Every third position is predicted, the others carry no loss.
        let targets = randomTokens(b * t, vocab: config.vocab, seed: 7).enumerated().map { $0.offset % 3 == 0 ? $0.element : -1 }
        func pass(_ observer: GradientObserver?) {
            model.zeroGradients()
            model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: 9)
            model.backward(observer: observer)
        }
        pass(nil)
        let plain = FloatBuffer(count: model.parameterCount)
        plain.copy(from: model.gradients)
        let recorder = Recorder(gradients: model.gradients, expected: plain, take: false)
        pass(recorder)
        XCTAssertTrue(recorder.finalWhenReported, "a range was written after it was reported")
        XCTAssertTrue(bitIdentical(model.gradients.pointer, plain.pointer, model.parameterCount))
        let layout = model.layout
        var expected = [layout.headDenseWeight..<model.parameterCount]
        for l in stride(from: config.layers - 1, through: 0, by: -1) {
            // Each tensor as soon as it is final, in backward's order.
            let w = layout.blocks[l], end = l + 1 < config.layers ? layout.blocks[l + 1].qkvWeight : layout.headDenseWeight
            expected += [w.ln2Weight..<end, w.fcProjWeight..<w.ln2Weight, w.fcWeight..<w.fcProjWeight,
                         w.ln1Weight..<w.fcWeight, w.attnProjWeight..<w.ln1Weight, w.qkvWeight..<w.attnProjWeight]
        }
        XCTAssertEqual(recorder.ranges, expected)
        XCTAssertEqual(recorder.ranges.map(\.count).reduce(0, +), model.parameterCount - layout.blocks[0].qkvWeight)
    }
}
