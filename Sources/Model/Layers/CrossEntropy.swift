import Tensors

/// Softmax cross-entropy over the vocabulary, mean over the rows whose target is >= 0
/// (a negative target marks a position without loss: padding, or unmasked BERT positions).
public enum CrossEntropy {
    /// logits (N, V) are left intact; logSumExp (N) and losses (N) are written.
    /// Returns (sum of losses in Float64, number of counted rows); the sum runs over rows in order.
    public static func forward(
        losses: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows n: Int, vocab v: Int
    ) -> (sum: Double, count: Int) {
        Parallel.forRanges(n, minimum: 4) { _, rows in
            for row in rows {
                let l = logits + row * v
                var mx = Vec(repeating: -Float.infinity)
                var j = 0
                while j + vecWidth <= v { mx = vmax(mx, loadVec(l + j)); j += vecWidth }
                if j < v { mx = vmax(mx, loadPartial(l + j, v - j, fill: -Float.infinity)) }
                let m = horizontalMax(mx)
                let mv = Vec(repeating: m)
                var sum = Vec()
                j = 0
                while j + vecWidth <= v { sum += expVec(loadVec(l + j) - mv); j += vecWidth }
                if j < v { sum += expVec(loadPartial(l + j, v - j, fill: -Float.infinity) - mv) }
                let lse = m + Float(log(Double(horizontalSum(sum))))
                logSumExp[row] = lse
                let target = Int(targets[row])
                losses[row] = target >= 0 ? lse - l[target] : 0
            }
        }
        var total = 0.0
        var count = 0
        for row in 0..<n where targets[row] >= 0 {
            total += Double(losses[row])
            count += 1
        }
        return (total, count)
    }

    /// In place: logits become dlogits = scale * (softmax(logits) - onehot(target)), rows with a
    /// negative target become 0. `scale` is d(loss)/d(row loss), e.g. 1 / counted rows.
    /// With `bf16InPlace` the gradient is written as bf16 for the head's bf16 products, row r's
    /// values at the start of its own float row (row stride 2 V bf16 values, as
    /// `BF16Convert.inPlace`), so no separate conversion pass reads the logits again.
    public static func backward(
        logits: UnsafeMutablePointer<Float>, logSumExp: UnsafePointer<Float>,
        targets: UnsafePointer<Int32>, rows n: Int, vocab v: Int, scale: Float, bf16InPlace: Bool = false
    ) {
        Parallel.forRanges(n, minimum: 4) { _, rows in
            for row in rows {
                let l = logits + row * v
                let target = Int(targets[row])
                if bf16InPlace {
                    bf16Row(l, lse: logSumExp[row], target: target, vocab: v, scale: scale)
                } else if target < 0 {
                    l.update(repeating: 0, count: v)
                } else {
                    let lse = Vec(repeating: logSumExp[row]), sv = Vec(repeating: scale)
                    var j = 0
                    while j + vecWidth <= v { storeVec(expVec(loadVec(l + j) - lse) * sv, l + j); j += vecWidth }
                    if j < v { storePartial(expVec(loadPartial(l + j, v - j) - lse) * sv, l + j, v - j) }
                    l[target] -= scale
                }
            }
        }
    }

    /// One row of `backward` into bf16 in place. The value at the target is formed in float32
    /// before it is rounded, as the float32 version forms it.
    @inline(__always)
    private static func bf16Row(_ l: UnsafeMutablePointer<Float>, lse: Float, target: Int, vocab v: Int, scale: Float) {
        let out = UnsafeMutableRawPointer(l).assumingMemoryBound(to: BF16.self)
        let lsev = Vec(repeating: lse), sv = Vec(repeating: target < 0 ? 0 : scale)
        let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        // Chunk j's 32 bytes land at float index j / 2, which the loop has read already.
        var j = 0
        while j < v {
            let k = min(vecWidth, v - j)
            var g = expVec((k == vecWidth ? loadVec(l + j) : loadPartial(l + j, k)) - lsev) * sv
            if target >= j && target < j + k {
                g = g - Vec(repeating: scale).replacing(with: 0, where: lane .!= SIMD16<Int32>(repeating: Int32(target - j)))
            }
            if k == vecWidth { storeBF16(g, out + j) } else { storePartialBF16(g, out + j, k) }
            j += vecWidth
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
