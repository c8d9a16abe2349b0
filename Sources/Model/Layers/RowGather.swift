import Tensors

/// Selected rows of a (N, D) matrix, and the gradient sent back to them: how the BERT head reads
/// only the masked positions (fairseq style) instead of projecting every position.
public enum RowGather {
    /// out[i] = x[rows[i]] for i < count. out (count, D); x (N, D); float32 or bf16 values.
    public static func forward<Element>(
        out: UnsafeMutablePointer<Element>, x: UnsafePointer<Element>, rows: UnsafePointer<Int32>, count: Int, width d: Int
    ) {
        Parallel.forRanges(count, minimum: 64) { _, range in
            for i in range { (out + i * d).update(from: x + Int(rows[i]) * d, count: d) }
        }
    }

    /// dx[rows[i]] += dout[i] for i < count. The rows must be distinct (each is written by one
    /// thread); other rows of dx are left as they are.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int, width d: Int
    ) {
        Parallel.forRanges(count, minimum: 64) { _, range in
            for i in range {
                let g = dout + i * d, o = dx + Int(rows[i]) * d
                var c = 0
                while c + vecWidth <= d { storeVec(loadVec(o + c) + loadVec(g + c), o + c); c += vecWidth }
                if c < d { storePartial(loadPartial(o + c, d - c) + loadPartial(g + c, d - c), o + c, d - c) }
            }
        }
    }
}
