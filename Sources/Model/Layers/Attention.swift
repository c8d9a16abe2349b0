import Tensors

/// Multi-head self-attention on a fused qkv tensor, for GPT (causal) and BERT (bidirectional with a
/// key padding mask): one kernel, the difference is the `Mask`.
///
/// qkv (B*T, 3A) holds, per token, all heads' queries, then keys, then values (A = H * hd).
/// Each (batch, head) pair is one task, run on one thread with single-threaded products that read
/// Q, K and V in place through their row stride. A causal task takes query rows in blocks of 64:
/// block [r0, r1) only meets keys [0, r1), so the products skip most of the masked upper triangle
/// (a quarter of the work at T = 128, nearly half at T = 512). A bidirectional task is one block.
///
/// Under bf16 (a `qkvCopy` in forward, a bf16 `qkv` in backward) the products read bf16 operands:
/// the task converts its head's q, k, v into the saved copy, the probabilities and their gradient
/// block by block into its scratch; softmax and its gradient stay float32.
public enum Attention {
    public struct Shape {
        public var batch, seq, heads, headDim: Int
        public init(batch: Int, seq: Int, heads: Int, headDim: Int) {
            self.batch = batch; self.seq = seq; self.heads = heads; self.headDim = headDim
        }
        var width: Int { heads * headDim }
        var scale: Float { 1 / Float(headDim).squareRoot() }
    }

    /// Which keys a query attends to.
    public enum Mask {
        /// Query i attends to keys 0...i (GPT).
        case causal
        /// Every query attends to every key whose entry in `keyMask` (B, T) is 1, none whose entry
        /// is 0 (BERT's padding); nil: every key. A query whose keys are all padding gets zero
        /// probabilities (its output is 0) rather than NaN; probabilities at masked keys are
        /// exactly 0, so padding never leaks into the other positions.
        case keys(UnsafePointer<Float>?)

        var isCausal: Bool { if case .causal = self { return true } else { return false } }
        /// Query rows per block.
        func block(_ t: Int) -> Int { isCausal ? 64 : t }
        /// Keys a block of queries [r0, r0 + rows) meets.
        func keys(_ r0: Int, _ rows: Int, _ t: Int) -> Int { isCausal ? r0 + rows : t }
        /// Keys query i meets.
        func length(_ i: Int, _ t: Int) -> Int { isCausal ? i + 1 : t }
        /// Batch row b's key mask, when it has padding.
        func padding(_ b: Int, _ t: Int) -> UnsafePointer<Float>? {
            guard case .keys(let keyMask?) = self else { return nil }
            let row = keyMask + b * t
            for j in 0..<t where row[j] == 0 { return row }
            return nil
        }
    }

    /// Scratch floats per worker thread.
    public static func scratchPerThread(seq t: Int, headDim hd: Int, precision: Precision) -> Int {
        precision == .fp32 ? 2 * t * t : 3 * t * t + (t * hd + 1) / 2 + t * hd
    }

    /// out (B*T, A): float32, or bf16 under mixed precision; att (B, H, T, T) softmax
    /// probabilities saved for backward (zero where masked); qkv (B*T, 3A) from the qkv layer;
    /// qkvCopy (B*T, 3A), under bf16 only, receives qkv's bf16 values (saved for backward);
    /// scratch (threads, `scratchPerThread`); dropout on the probabilities.
    public static func forward(
        out: OperandOutput, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        qkvCopy: UnsafeMutablePointer<BF16>?, shape s: Shape, mask: Mask, dropout: Dropout?,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let precision: Precision = qkvCopy == nil ? .fp32 : .bf16
        let perThread = scratchPerThread(seq: s.seq, headDim: s.headDim, precision: precision)
        Profiler.measure(.attention) {
            Parallel.forRanges(s.batch * s.heads) { worker, tasks in
                let work = Workspace(scratch + worker * perThread, s, precision)
                for task in tasks { forwardTask(task, out, att, qkv, qkvCopy, s, mask, dropout, work) }
            }
        }
    }

    /// dqkv (B*T, 3A) is overwritten; dout (B*T, A); qkv (float32 or its bf16 copy) and att as
    /// saved by forward.
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: Operand,
        att: UnsafePointer<Float>, shape s: Shape, mask: Mask, dropout: Dropout?,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let perThread = scratchPerThread(seq: s.seq, headDim: s.headDim, precision: qkv.precision)
        Profiler.measure(.attention) {
            Parallel.forRanges(s.batch * s.heads) { worker, tasks in
                let work = Workspace(scratch + worker * perThread, s, qkv.precision)
                for task in tasks { backwardTask(task, dqkv, dout, qkv, att, s, mask, dropout, work) }
            }
        }
    }

    /// A worker's scratch: dropped probabilities and the probability gradient (float32, T x T);
    /// under bf16 also the bf16 probabilities and gradient (T x T each), the task's output
    /// gradient (T x hd) and a float32 output block (T x hd).
    struct Workspace {
        let dropped, dp: UnsafeMutablePointer<Float>
        let p16, ds16, dy16: UnsafeMutablePointer<BF16>?
        let y: UnsafeMutablePointer<Float>?

        init(_ base: UnsafeMutablePointer<Float>, _ s: Shape, _ precision: Precision) {
            let tt = s.seq * s.seq
            dropped = base
            dp = base + tt
            guard precision == .bf16 else { p16 = nil; ds16 = nil; dy16 = nil; y = nil; return }
            let half = UnsafeMutableRawPointer(base + 2 * tt).assumingMemoryBound(to: BF16.self)
            p16 = half
            ds16 = half + tt
            dy16 = half + 2 * tt
            y = base + 3 * tt + (s.seq * s.headDim + 1) / 2
        }

        /// The (rows, cols) float32 block `x` (row stride ld) as a product reads it: itself, or
        /// its bf16 values in `copy` (row stride ld too).
        @inline(__always)
        func operand(_ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, copy: UnsafeMutablePointer<BF16>?) -> Operand {
            guard let copy else { return .fp32(x) }
            BF16Convert.rowsSerial(x, lds: ld, copy, ldd: ld, rows: rows, cols: cols)
            return .bf16(copy)
        }
    }

    /// One (batch, head): S = Q K^T / sqrt(hd), softmax over the keys the mask allows, Y = P V,
    /// block by block.
    @inline(__always)
    static func forwardTask(
        _ task: Int, _ out: OperandOutput, _ att: UnsafeMutablePointer<Float>, _ qkv: UnsafePointer<Float>,
        _ qkvCopy: UnsafeMutablePointer<BF16>?, _ s: Shape, _ mask: Mask, _ dropout: Dropout?, _ work: Workspace
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        let b = task / s.heads, h = task % s.heads
        let head = b * t * ld + h * hd
        var q = Operand.fp32(qkv + head), k = q + a, v = q + 2 * a
        if let qkvCopy {
            for part in 0..<3 {
                BF16Convert.rowsSerial(qkv + head + part * a, lds: ld, qkvCopy + head + part * a, ldd: ld, rows: t, cols: hd)
            }
            q = .bf16(qkvCopy + head); k = q + a; v = q + 2 * a
        }
        let p = att + task * t * t
        let padding = mask.padding(b, t)
        let block = mask.block(t)
        for r0 in stride(from: 0, to: t, by: block) {
            let rows = min(block, t - r0), keys = mask.keys(r0, rows, t)
            gemmSerial(false, true, rows, keys, hd, s.scale, q + r0 * ld, ld, k, ld, 0, p + r0 * t, t)
            if let padding {
                for i in r0..<(r0 + rows) { softmaxMaskedRow(p + i * t, mask: padding, length: t) }
            } else {
                for i in r0..<(r0 + rows) { softmaxRow(p + i * t, length: mask.length(i, t), stride: t) }
            }
            var probs = UnsafePointer(p + r0 * t)
            if let dropout {
                dropout.applySerial(out: work.dropped + r0 * t, x: probs, count: rows * t, startIndex: task * t * t + r0 * t)
                probs = UnsafePointer(work.dropped + r0 * t)
            }
            let pOperand = work.operand(probs, rows: rows, cols: keys, ld: t, copy: work.p16)
            let y = out + (b * t + r0) * a + h * hd
            if let yFloat = y.fp32 {
                gemmSerial(false, false, rows, hd, keys, 1, pOperand, t, v, ld, 0, yFloat, a)
                if let y16 = y.bf16 { BF16Convert.rowsSerial(yFloat, lds: a, y16, ldd: a, rows: rows, cols: hd) }
            } else if let y16 = y.bf16, let block = work.y {
                gemmSerial(false, false, rows, hd, keys, 1, pOperand, t, v, ld, 0, block, hd)
                BF16Convert.rowsSerial(block, lds: hd, y16, ldd: a, rows: rows, cols: hd)
            }
        }
    }

    /// One (batch, head), block by block: dP = dY V^T, dV += P^T dY, dS = softmax'(dP),
    /// dQ = dS K / sqrt(hd), dK += dS^T Q / sqrt(hd). dK and dV sum over blocks in order; masked
    /// keys have P = 0, so their dS is 0 too.
    @inline(__always)
    static func backwardTask(
        _ task: Int, _ dqkv: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ qkv: Operand,
        _ att: UnsafePointer<Float>, _ s: Shape, _ mask: Mask, _ dropout: Dropout?, _ work: Workspace
    ) {
        let t = s.seq, a = s.width, hd = s.headDim, ld = 3 * a
        let b = task / s.heads, h = task % s.heads
        let q = qkv + (b * t * ld + h * hd), k = q + a, v = q + 2 * a
        let dq = dqkv + b * t * ld + h * hd, dk = dq + a, dv = dq + 2 * a
        var dy = Operand.fp32(dout + b * t * a + h * hd), ldy = a
        if let dy16 = work.dy16 {
            BF16Convert.rowsSerial(dout + b * t * a + h * hd, lds: a, dy16, ldd: hd, rows: t, cols: hd)
            dy = .bf16(dy16); ldy = hd
        }
        let p = att + task * t * t
        for i in 0..<t {
            (dk + i * ld).update(repeating: 0, count: hd)
            (dv + i * ld).update(repeating: 0, count: hd)
        }
        let block = mask.block(t)
        for r0 in stride(from: 0, to: t, by: block) {
            let rows = min(block, t - r0), keys = mask.keys(r0, rows, t)
            var probs = p + r0 * t
            if let dropout {
                dropout.applySerial(out: work.dropped + r0 * t, x: probs, count: rows * t, startIndex: task * t * t + r0 * t)
                probs = UnsafePointer(work.dropped + r0 * t)
            }
            let d = work.dp + r0 * t
            gemmSerial(false, true, rows, keys, hd, 1, dy + r0 * ldy, ldy, v, ld, 0, d, t)
            let pOperand = work.operand(probs, rows: rows, cols: keys, ld: t, copy: work.p16)
            gemmSerial(true, false, keys, hd, rows, 1, pOperand, t, dy + r0 * ldy, ldy, 1, dv, ld)
            if let dropout { dropout.applySerial(out: d, x: d, count: rows * t, startIndex: task * t * t + r0 * t) }
            for i in 0..<rows { softmaxBackwardRow(d + i * t, p + (r0 + i) * t, length: mask.length(r0 + i, t), stride: t) }
            let dS = work.operand(d, rows: rows, cols: keys, ld: t, copy: work.ds16)
            gemmSerial(false, false, rows, hd, keys, s.scale, dS, t, k, ld, 0, dq + r0 * ld, ld)
            gemmSerial(true, false, keys, hd, rows, s.scale, dS, t, q + r0 * ld, ld, 1, dk, ld)
        }
    }
}
