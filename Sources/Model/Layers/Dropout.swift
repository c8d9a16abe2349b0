import Tensors

/// Inverted dropout with a stateless mask: element i of the stream `key` is kept when
/// CounterHash(key, i) >= p * 2^32, and kept values are scaled by 1 / (1 - p). The mask is never
/// stored: backward recomputes it from the same key, and any thread can compute any element.
public struct Dropout: Sendable {
    public let probability: Float
    public let key: UInt32

    public init(probability: Float, key: UInt32) {
        self.probability = probability
        self.key = key
    }

    var threshold: UInt32 { UInt32(min(Double(probability) * 4_294_967_296.0, 4_294_967_295.0)) }
    var scale: Float { 1 / (1 - probability) }

    /// The multiplier (0 or 1/(1-p)) of the 16 elements starting at `index`.
    @inline(__always)
    func factors(at index: Int) -> Vec {
        let lanes = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let idx = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: index)) &+ lanes
        let h = CounterHash.mix(idx ^ SIMD16<UInt32>(repeating: CounterHash.mix(key)))
        let keep = h .>= SIMD16<UInt32>(repeating: threshold)
        return Vec(repeating: 0).replacing(with: Vec(repeating: scale), where: keep)
    }

    /// The multiplier of element `index` alone (for tests and references).
    public func factor(at index: Int) -> Float { factors(at: index)[0] }

    /// out[i] = x[i] * factor(startIndex + i) on the calling thread; out may alias x.
    @inline(__always)
    public func applySerial(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int, startIndex: Int = 0) {
        var i = 0
        while i + vecWidth <= n {
            storeVec(loadVec(x + i) * factors(at: startIndex + i), out + i)
            i += vecWidth
        }
        if i < n { storePartial(loadPartial(x + i, n - i) * factors(at: startIndex + i), out + i, n - i) }
    }

    /// out[i] = x[i] * factor(i), split across threads; out may alias x.
    public func apply(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
        Parallel.forRanges(n, grain: 256, minimum: 4096) { _, r in
            applySerial(out: out + r.lowerBound, x: x + r.lowerBound, count: r.count, startIndex: r.lowerBound)
        }
    }

    /// The same into float32 and/or bf16 (a dropped-out activation that products read).
    public func apply(out: OperandOutput, x: UnsafePointer<Float>, count n: Int) {
        out.run(Apply(dropout: self, x: x, n: n))
    }

    private struct Apply: SinkKernel {
        let dropout: Dropout, x: UnsafePointer<Float>, n: Int

        func run<Sink: VectorSink>(_ out: Sink) {
            Parallel.forRanges(n, grain: 256, minimum: 4096) { _, r in
                var i = r.lowerBound
                while i + vecWidth <= r.upperBound { out.store(loadVec(x + i) * dropout.factors(at: i), at: i); i += vecWidth }
                if i < r.upperBound {
                    let k = r.upperBound - i
                    out.storePartial(loadPartial(x + i, k) * dropout.factors(at: i), at: i, count: k)
                }
            }
        }
    }

    /// out[i] = a[i] + x[i] * factor(i): a residual connection around a dropped-out branch.
    public func addApplied(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
        Parallel.forRanges(n, grain: 256, minimum: 4096) { _, r in
            var i = r.lowerBound
            while i + vecWidth <= r.upperBound {
                storeVec(loadVec(a + i).addingProduct(loadVec(x + i), factors(at: i)), out + i)
                i += vecWidth
            }
            if i < r.upperBound {
                let k = r.upperBound - i
                storePartial(loadPartial(a + i, k).addingProduct(loadPartial(x + i, k), factors(at: i)), out + i, k)
            }
        }
    }
}

/// out = a + b, vectorized (the residual connection without dropout).
public func residualAdd(out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, count n: Int) {
    Parallel.forRanges(n, grain: 256, minimum: 4096) { _, r in
        var i = r.lowerBound
        while i + vecWidth <= r.upperBound { storeVec(loadVec(a + i) + loadVec(b + i), out + i); i += vecWidth }
        while i < r.upperBound { out[i] = a[i] + b[i]; i += 1 }
    }
}

/// The dropout sites of one forward/backward pass, shared by GPT and BERT: site s's mask is keyed
/// by (the pass's seed, s), so backward recomputes exactly forward's masks. No seed: dropout off.
struct DropoutSites {
    let seed: UInt64?
    let probability: Float
    /// Where `branchGradient` writes a dropped-out gradient (the model's branch scratch).
    let scratch: UnsafeMutablePointer<Float>

    /// The dropout of `site` in this pass, or nil when dropout is off.
    func at(site: Int) -> Dropout? {
        guard let seed else { return nil }
        return Dropout(probability: probability, key: UInt32(truncatingIfNeeded: SplitMix64.mix(seed, UInt64(site))))
    }

    /// out = x + dropout(branch)
    func addResidual(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                     branch: UnsafePointer<Float>, count: Int, site: Int) {
        if let drop = at(site: site) {
            drop.addApplied(out: out, a: x, x: branch, count: count)
        } else {
            residualAdd(out: out, a: x, b: branch, count: count)
        }
    }

    /// The gradient reaching a dropped-out branch: dropout(gradient) in `scratch`, or the
    /// gradient itself when dropout is off.
    func branchGradient(_ gradient: UnsafeMutablePointer<Float>, count: Int, site: Int) -> UnsafeMutablePointer<Float> {
        guard let drop = at(site: site) else { return gradient }
        drop.apply(out: scratch, x: gradient, count: count)
        return scratch
    }
}
