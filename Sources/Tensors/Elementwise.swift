/// Whole-buffer elementwise operations, vectorized and split across `Parallel.threads`.
/// Reductions use fixed-size blocks summed in block order, so their bits do not depend on
/// the thread count.

/// dst[i] += src[i]
public func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    Parallel.forRanges(count, grain: 1024, minimum: 1 << 15) { _, r in
        var i = r.lowerBound
        while i + vecWidth <= r.upperBound {
            storeVec(loadVec(dst + i) + loadVec(src + i), dst + i)
            i += vecWidth
        }
        while i < r.upperBound { dst[i] += src[i]; i += 1 }
    }
}

/// dst[i] *= s
public func scaleInPlace(_ dst: UnsafeMutablePointer<Float>, _ s: Float, count: Int) {
    Parallel.forRanges(count, grain: 1024, minimum: 1 << 15) { _, r in
        var i = r.lowerBound
        let sv = Vec(repeating: s)
        while i + vecWidth <= r.upperBound {
            storeVec(loadVec(dst + i) * sv, dst + i)
            i += vecWidth
        }
        while i < r.upperBound { dst[i] *= s; i += 1 }
    }
}

/// Block size of deterministic reductions.
public let reductionBlock = 1 << 14

/// Sum of squares in Float64, reproducible for any thread count.
public func sumOfSquares(_ p: UnsafePointer<Float>, count: Int) -> Double {
    let blocks = (count + reductionBlock - 1) / reductionBlock
    if blocks == 0 { return 0 }
    return withUnsafeTemporaryAllocation(of: Double.self, capacity: blocks) { partial in
        blockSumsOfSquares(p, count: count, blocks: 0..<blocks, into: partial.baseAddress!)
        var total = 0.0
        for b in 0..<blocks { total += partial[b] }
        return total
    }
}

/// The per-block partial sums `sumOfSquares` adds (block b covers elements
/// b * reductionBlock ..< min((b + 1) * reductionBlock, count)), for `blocks` only, into
/// `partial[b]`. Adding every block's partial in block order gives `sumOfSquares`'s bits, however
/// the blocks were shared out (ZeRO-1's clipping norm).
public func blockSumsOfSquares(_ p: UnsafePointer<Float>, count: Int, blocks: Range<Int>, into partial: UnsafeMutablePointer<Double>) {
    Parallel.forRanges(blocks.count, minimum: 4) { _, range in
        for block in (blocks.lowerBound + range.lowerBound)..<(blocks.lowerBound + range.upperBound) {
            let start = block * reductionBlock
            let end = min(start + reductionBlock, count)
            var acc = SIMD8<Double>()
            var i = start
            while i + 8 <= end {
                let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
                let d = SIMD8<Double>(v)
                acc = acc.addingProduct(d, d)
                i += 8
            }
            var s = acc.sum()
            while i < end { s += Double(p[i]) * Double(p[i]); i += 1 }
            partial[block] = s
        }
    }
}

/// True if any element is NaN or infinite.
public func containsNonFinite(_ p: UnsafePointer<Float>, count: Int) -> Bool {
    for i in 0..<count where !p[i].isFinite { return true }
    return false
}
