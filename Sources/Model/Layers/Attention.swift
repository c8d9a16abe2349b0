import Tensors

/// Causal multi-head self-attention on a fused qkv tensor.
///
/// qkv (B*T, 3A) holds, per token, all heads' queries, then keys, then values (A = H * hd).
/// Each (batch, head) pair is one task, run on one thread with single-threaded GEMMs that read
/// Q, K and V in place through their row stride. Within a task, query rows go in blocks of 64:
/// block [r0, r1) only meets keys [0, r1), so the products skip most of the masked upper
/// triangle (a quarter of the work at T = 128, nearly half at T = 512).
public enum Attention {
    public struct Shape {
        public var batch, seq, heads, headDim: Int
        public init(batch: Int, seq: Int, heads: Int, headDim: Int) {
            self.batch = batch; self.seq = seq; self.heads = heads; self.headDim = headDim
        }
        var width: Int { heads * headDim }
        var scale: Float { 1 / Float(headDim).squareRoot() }
    }

    /// Query rows per block.
    static let block = 64

    /// Scratch floats per worker thread.
    public static func scratchPerThread(seq t: Int) -> Int { 2 * t * t }

    /// out (B*T, A); att (B, H, T, T) softmax probabilities saved for backward (rows zero above
    /// the diagonal); qkv (B*T, 3A); scratch (threads, 2, T, T); dropout on the probabilities.
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, shape s: Shape, dropout: Dropout?,
        scratch: UnsafeMutablePointer<Float>
    ) {
        Profiler.measure(.attention) {
            Parallel.forRanges(s.batch * s.heads) { worker, tasks in
                let local = scratch + worker * scratchPerThread(seq: s.seq)
                for task in tasks { forwardTask(task, out, att, qkv, s, dropout, dropped: local) }
            }
        }
    }

    /// dqkv (B*T, 3A) is overwritten; dout (B*T, A); qkv and att as saved by forward.
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
        att: UnsafePointer<Float>, shape s: Shape, dropout: Dropout?,
        scratch: UnsafeMutablePointer<Float>
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

    /// One (batch, head): S = Q K^T / sqrt(hd), causal softmax, Y = P V, block by block.
    @inline(__always)
    static func forwardTask(
        _ task: Int, _ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>,
        _ qkv: UnsafePointer<Float>, _ s: Shape, _ dropout: Dropout?, dropped: UnsafeMutablePointer<Float>
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        let b = task / s.heads, h = task % s.heads
        let q = qkv + b * t * ld + h * hd, k = q + a, v = q + 2 * a
        let p = att + task * t * t
        let y = out + b * t * a + h * hd
        for r0 in stride(from: 0, to: t, by: block) {
            let rows = min(block, t - r0), keys = r0 + rows
            sgemmSerial(false, true, rows, keys, hd, s.scale, q + r0 * ld, ld, k, ld, 0, p + r0 * t, t)
            for i in r0..<keys { softmaxCausalRow(p + i * t, length: i + 1, stride: t) }
            var probs = UnsafePointer(p + r0 * t)
            if let dropout {
                dropout.applySerial(out: dropped + r0 * t, x: p + r0 * t, count: rows * t, startIndex: task * t * t + r0 * t)
                probs = UnsafePointer(dropped + r0 * t)
            }
            sgemmSerial(false, false, rows, hd, keys, 1, probs, t, v, ld, 0, y + r0 * a, a)
        }
    }

    /// One (batch, head), block by block: dP = dY V^T, dV += P^T dY, dS = softmax'(dP),
    /// dQ = dS K / sqrt(hd), dK += dS^T Q / sqrt(hd). dK and dV sum over blocks in order.
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
        for i in 0..<t {
            (dk + i * ld).update(repeating: 0, count: hd)
            (dv + i * ld).update(repeating: 0, count: hd)
        }
        for r0 in stride(from: 0, to: t, by: block) {
            let rows = min(block, t - r0), keys = r0 + rows
            var probs = p + r0 * t
            if let dropout {
                dropout.applySerial(out: dropped + r0 * t, x: probs, count: rows * t, startIndex: task * t * t + r0 * t)
                probs = UnsafePointer(dropped + r0 * t)
            }
            let d = dp + r0 * t
            sgemmSerial(false, true, rows, keys, hd, 1, dy + r0 * a, a, v, ld, 0, d, t)
            sgemmSerial(true, false, keys, hd, rows, 1, probs, t, dy + r0 * a, a, 1, dv, ld)
            if let dropout { dropout.applySerial(out: d, x: d, count: rows * t, startIndex: task * t * t + r0 * t) }
            for i in 0..<rows { softmaxBackwardRow(d + i * t, p + (r0 + i) * t, length: r0 + i + 1, stride: t) }
            sgemmSerial(false, false, rows, hd, keys, s.scale, d, t, k, ld, 0, dq + r0 * ld, ld)
            sgemmSerial(true, false, keys, hd, rows, s.scale, d, t, q + r0 * ld, ld, 1, dk, ld)
        }
    }

    /// In place: row[0..<length] = softmax(row[0..<length]); row[length..<stride] = 0.
    @inline(__always)
    static func softmaxCausalRow(_ row: UnsafeMutablePointer<Float>, length n: Int, stride: Int) {
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
        (row + n).update(repeating: 0, count: stride - n)
    }

    /// In place: d[0..<length] = p * (d - sum(p * d)); d[length..<stride] = 0.
    @inline(__always)
    static func softmaxBackwardRow(
        _ d: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, length n: Int, stride: Int
    ) {
        var acc = Vec()
        var j = 0
        while j + vecWidth <= n { acc = acc.addingProduct(loadVec(p + j), loadVec(d + j)); j += vecWidth }
        if j < n { acc = acc.addingProduct(loadPartial(p + j, n - j), loadPartial(d + j, n - j)) }
        let s = Vec(repeating: horizontalSum(acc))
        j = 0
        while j + vecWidth <= n { storeVec(loadVec(p + j) * (loadVec(d + j) - s), d + j); j += vecWidth }
        if j < n { storePartial(loadPartial(p + j, n - j) * (loadPartial(d + j, n - j) - s), d + j, n - j) }
        (d + n).update(repeating: 0, count: stride - n)
    }
}
