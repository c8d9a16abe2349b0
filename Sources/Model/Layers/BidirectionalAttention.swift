import Tensors

/// Multi-head self-attention without a causal mask (BERT), with an optional key padding mask.
///
/// Same fused qkv layout and task split as the causal `Attention` (one (batch, head) pair per
/// task, single-threaded GEMMs reading Q, K and V in place), but every query meets every key, so
/// each task is three whole T x T products instead of causal blocks. `keyMask` (B, T) holds 1 for
/// a key that may be attended to and 0 for padding; a query row whose keys are all padding gets
/// zero probabilities (its output is 0) rather than NaN. Probabilities at masked keys are exactly
/// 0, so padding never leaks into the other positions.
public enum BidirectionalAttention {
    public typealias Shape = Attention.Shape

    /// Scratch floats per worker thread (dropped probabilities and their gradient).
    public static func scratchPerThread(seq t: Int) -> Int { 2 * t * t }

    /// out (B*T, A); att (B, H, T, T) softmax probabilities saved for backward; qkv (B*T, 3A);
    /// keyMask (B, T) or nil for no padding; scratch (threads, 2, T, T); dropout on the probabilities.
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        keyMask: UnsafePointer<Float>?, shape s: Shape, dropout: Dropout?, scratch: UnsafeMutablePointer<Float>
    ) {
        Profiler.measure(.attention) {
            Parallel.forRanges(s.batch * s.heads) { worker, tasks in
                let local = scratch + worker * scratchPerThread(seq: s.seq)
                for task in tasks { forwardTask(task, out, att, qkv, keyMask, s, dropout, dropped: local) }
            }
        }
    }

    /// dqkv (B*T, 3A) is overwritten; dout (B*T, A); qkv, att and keyMask as in forward.
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
        att: UnsafePointer<Float>, shape s: Shape, dropout: Dropout?, scratch: UnsafeMutablePointer<Float>
    ) {
        Profiler.measure(.attention) {
            Parallel.forRanges(s.batch * s.heads) { worker, tasks in
                let local = scratch + worker * scratchPerThread(seq: s.seq)
                for task in tasks {
                    backwardTask(task, dqkv, dout, qkv, att, s, dropout, dp: local, dropped: local + s.seq * s.seq)
                }
            }
        }
    }

    /// One (batch, head): S = Q K^T / sqrt(hd), softmax over the unmasked keys, Y = P V.
    @inline(__always)
    static func forwardTask(
        _ task: Int, _ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>,
        _ qkv: UnsafePointer<Float>, _ keyMask: UnsafePointer<Float>?, _ s: Shape, _ dropout: Dropout?,
        dropped: UnsafeMutablePointer<Float>
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        let b = task / s.heads, h = task % s.heads
        let q = qkv + b * t * ld + h * hd, k = q + a, v = q + 2 * a
        let p = att + task * t * t
        sgemmSerial(false, true, t, t, hd, s.scale, q, ld, k, ld, 0, p, t)
        let mask = keyMask.map { $0 + b * t }
        if let mask, hasPadding(mask, t) {
            for i in 0..<t { softmaxMaskedRow(p + i * t, mask: mask, length: t) }
        } else {
            for i in 0..<t { softmaxRow(p + i * t, length: t) }
        }
        var probs = UnsafePointer(p)
        if let dropout {
            dropout.applySerial(out: dropped, x: p, count: t * t, startIndex: task * t * t)
            probs = UnsafePointer(dropped)
        }
        sgemmSerial(false, false, t, hd, t, 1, probs, t, v, ld, 0, out + b * t * a + h * hd, a)
    }

    /// One (batch, head): dP = dY V^T, dV = P^T dY, dS = softmax'(dP), dQ = dS K / sqrt(hd),
    /// dK = dS^T Q / sqrt(hd). Masked keys have P = 0, so their dS is 0 too.
    @inline(__always)
    static func backwardTask(
        _ task: Int, _ dqkv: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
        _ qkv: UnsafePointer<Float>, _ att: UnsafePointer<Float>, _ s: Shape, _ dropout: Dropout?,
        dp: UnsafeMutablePointer<Float>, dropped: UnsafeMutablePointer<Float>
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        let b = task / s.heads, h = task % s.heads
        let q = qkv + b * t * ld + h * hd, k = q + a, v = q + 2 * a
        let dq = dqkv + b * t * ld + h * hd, dk = dq + a, dv = dq + 2 * a
        let dy = dout + b * t * a + h * hd
        let p = att + task * t * t
        var probs = p
        if let dropout {
            dropout.applySerial(out: dropped, x: p, count: t * t, startIndex: task * t * t)
            probs = UnsafePointer(dropped)
        }
        sgemmSerial(false, true, t, t, hd, 1, dy, a, v, ld, 0, dp, t)
        sgemmSerial(true, false, t, hd, t, 1, probs, t, dy, a, 0, dv, ld)
        if let dropout { dropout.applySerial(out: dp, x: dp, count: t * t, startIndex: task * t * t) }
        for i in 0..<t { softmaxBackwardRow(dp + i * t, p + i * t, length: t) }
        sgemmSerial(false, false, t, hd, t, s.scale, dp, t, k, ld, 0, dq, ld)
        sgemmSerial(true, false, t, hd, t, s.scale, dp, t, q, ld, 0, dk, ld)
    }

    /// In place: row = softmax(row).
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, length n: Int) {
        var mx = Vec(repeating: -Float.infinity)
        var j = 0
        while j + vecWidth <= n { mx = vmax(mx, loadVec(row + j)); j += vecWidth }
        if j < n { mx = vmax(mx, loadPartial(row + j, n - j, fill: -Float.infinity)) }
        let m = Vec(repeating: horizontalMax(mx))
        var sum = Vec()
        j = 0
        while j + vecWidth <= n { let e = expVec(loadVec(row + j) - m); storeVec(e, row + j); sum += e; j += vecWidth }
        if j < n {
            let e = expVec(loadPartial(row + j, n - j, fill: -Float.infinity) - m)
            storePartial(e, row + j, n - j)
            sum += e
        }
        let inv = Vec(repeating: 1 / horizontalSum(sum))
        j = 0
        while j + vecWidth <= n { storeVec(loadVec(row + j) * inv, row + j); j += vecWidth }
        if j < n { storePartial(loadPartial(row + j, n - j) * inv, row + j, n - j) }
    }

    /// In place: d = p * (d - sum(p * d)).
    @inline(__always)
    static func softmaxBackwardRow(_ d: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, length n: Int) {
        var acc = Vec()
        var j = 0
        while j + vecWidth <= n { acc = acc.addingProduct(loadVec(p + j), loadVec(d + j)); j += vecWidth }
        if j < n { acc = acc.addingProduct(loadPartial(p + j, n - j), loadPartial(d + j, n - j)) }
        let s = Vec(repeating: horizontalSum(acc))
        j = 0
        while j + vecWidth <= n { storeVec(loadVec(p + j) * (loadVec(d + j) - s), d + j); j += vecWidth }
        if j < n { storePartial(loadPartial(p + j, n - j) * (loadPartial(d + j, n - j) - s), d + j, n - j) }
    }

    @inline(__always)
    static func hasPadding(_ mask: UnsafePointer<Float>, _ t: Int) -> Bool {
        for j in 0..<t where mask[j] == 0 { return true }
        return false
    }

    /// In place: row = softmax over the keys where mask is 1, exactly 0 where it is 0; all 0 when
    /// every key is masked.
    @inline(__always)
    static func softmaxMaskedRow(_ row: UnsafeMutablePointer<Float>, mask: UnsafePointer<Float>, length n: Int) {
        let minusInfinity = Vec(repeating: -Float.infinity), zero = Vec()
        var mx = minusInfinity
        var j = 0
        while j < n {
            let k = min(vecWidth, n - j)
            let x = k == vecWidth ? loadVec(row + j) : loadPartial(row + j, k, fill: -Float.infinity)
            let m = k == vecWidth ? loadVec(mask + j) : loadPartial(mask + j, k)
            mx = vmax(mx, x.replacing(with: minusInfinity, where: m .== zero))
            j += vecWidth
        }
        let top = horizontalMax(mx)
        if top == -Float.infinity {
            row.update(repeating: 0, count: n)
            return
        }
        let m = Vec(repeating: top)
        var sum = Vec()
        j = 0
        while j < n {
            let k = min(vecWidth, n - j)
            let x = k == vecWidth ? loadVec(row + j) : loadPartial(row + j, k)
            let keep = k == vecWidth ? loadVec(mask + j) : loadPartial(mask + j, k)
            // Masked scores may be anything (even +inf after scaling): select before exp.
            let e = expVec(x.replacing(with: m, where: keep .== zero) - m) * keep
            if k == vecWidth { storeVec(e, row + j) } else { storePartial(e, row + j, k) }
            sum += e
            j += vecWidth
        }
        let inv = Vec(repeating: 1 / horizontalSum(sum))
        j = 0
        while j < n {
            let k = min(vecWidth, n - j)
            if k == vecWidth { storeVec(loadVec(row + j) * inv, row + j) } else { storePartial(loadPartial(row + j, k) * inv, row + j, k) }
            j += vecWidth
        }
    }
}
