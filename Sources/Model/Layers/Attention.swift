import Tensors

/// Causal multi-head self-attention on a fused qkv tensor.
///
/// qkv (B*T, 3A) holds, per token, all heads' queries, then keys, then values (A = H * hd).
/// Each (batch, head) pair is one task: S = Q K^T / sqrt(hd) as a (T, T) single-threaded GEMM
/// reading Q and K in place through their row stride, a causal softmax, then Y = P V. Tasks run
/// in parallel; per-thread scratch holds the dropped-out probabilities and gradients.
public enum Attention {
    public struct Shape {
        public var batch, seq, heads, headDim: Int
        public init(batch: Int, seq: Int, heads: Int, headDim: Int) {
            self.batch = batch; self.seq = seq; self.heads = heads; self.headDim = headDim
        }
        var width: Int { heads * headDim }
        var scale: Float { 1 / Float(headDim).squareRoot() }
    }

    /// Scratch floats per worker thread.
    public static func scratchPerThread(seq t: Int) -> Int { 2 * t * t }

    /// out (B*T, A); att (B, H, T, T) softmax probabilities, saved for backward (zero above the
    /// diagonal); qkv (B*T, 3A); scratch (threads, 2, T, T); dropout on the probabilities or nil.
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, shape s: Shape, dropout: Dropout?,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        Parallel.forRanges(s.batch * s.heads) { worker, tasks in
            let dropped = scratch + worker * scratchPerThread(seq: t)
            for task in tasks {
                let b = task / s.heads, h = task % s.heads
                let q = qkv + b * t * ld + h * hd
                let k = q + a, v = q + 2 * a
                let p = att + task * t * t
                sgemmSerial(false, true, t, t, hd, s.scale, q, ld, k, ld, 0, p, t)
                for i in 0..<t { softmaxCausalRow(p + i * t, length: i + 1, stride: t) }
                var probs = UnsafePointer(p)
                if let dropout {
                    dropout.applySerial(out: dropped, x: p, count: t * t, startIndex: task * t * t)
                    probs = UnsafePointer(dropped)
                }
                sgemmSerial(false, false, t, hd, t, 1, probs, t, v, ld, 0, out + b * t * a + h * hd, a)
            }
        }
    }

    /// dqkv (B*T, 3A) is overwritten; dout (B*T, A); qkv and att as saved by forward.
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
        att: UnsafePointer<Float>, shape s: Shape, dropout: Dropout?,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        Parallel.forRanges(s.batch * s.heads) { worker, tasks in
            let dp = scratch + worker * scratchPerThread(seq: t)
            let dropped = dp + t * t
            for task in tasks {
                let b = task / s.heads, h = task % s.heads
                let q = qkv + b * t * ld + h * hd
                let k = q + a, v = q + 2 * a
                let dq = dqkv + b * t * ld + h * hd
                let dk = dq + a, dv = dq + 2 * a
                let dy = dout + b * t * a + h * hd
                let p = att + task * t * t
                var probs = p
                if let dropout {
                    dropout.applySerial(out: dropped, x: p, count: t * t, startIndex: task * t * t)
                    probs = UnsafePointer(dropped)
                }
                // dP = dY V^T; dV = P^T dY
                sgemmSerial(false, true, t, t, hd, 1, dy, a, v, ld, 0, dp, t)
                sgemmSerial(true, false, t, hd, t, 1, probs, t, dy, a, 0, dv, ld)
                if let dropout { dropout.applySerial(out: dp, x: dp, count: t * t, startIndex: task * t * t) }
                // dS = P * (dP - rowsum(P * dP)) on the causal triangle, 0 above it.
                for i in 0..<t { softmaxBackwardRow(dp + i * t, p + i * t, length: i + 1, stride: t) }
                // dQ = dS K / sqrt(hd); dK = dS^T Q / sqrt(hd)
                sgemmSerial(false, false, t, hd, t, s.scale, dp, t, k, ld, 0, dq, ld)
                sgemmSerial(true, false, t, hd, t, s.scale, dp, t, q, ld, 0, dk, ld)
            }
        }
    }

    /// In place: row[0..<length] = softmax(row[0..<length]); row[length..<stride] = 0.
    @inline(__always)
    static func softmaxCausalRow(_ row: UnsafeMutablePointer<Float>, length n: Int, stride: Int) {
        var mx = Vec(repeating: -Float.infinity)
        var j = 0
        while j + vecWidth <= n { mx = pointwiseMax(mx, loadVec(row + j)); j += vecWidth }
        if j < n { mx = pointwiseMax(mx, loadPartial(row + j, n - j, fill: -Float.infinity)) }
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
        for z in n..<stride { row[z] = 0 }
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
        for z in n..<stride { d[z] = 0 }
    }
}
