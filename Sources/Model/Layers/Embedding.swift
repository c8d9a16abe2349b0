import Tensors

/// Token plus learned position embedding: out[b, t] = wte[tokens[b, t]] + wpe[t].
public enum Embedding {
    /// out (B*T, D); tokens (B*T); wte (V, D); wpe (>= T, D)
    public static func forward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
        wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>, batch: Int, seq: Int, width d: Int
    ) {
        Parallel.forRanges(batch * seq, minimum: 16) { _, rows in
            for row in rows {
                let tok = wte + Int(tokens[row]) * d
                let pos = wpe + (row % seq) * d
                let o = out + row * d
                var c = 0
                while c + vecWidth <= d { storeVec(loadVec(tok + c) + loadVec(pos + c), o + c); c += vecWidth }
                while c < d { o[c] = tok[c] + pos[c]; c += 1 }
            }
        }
    }

    /// dwte[tokens[r]] += dout[r]; dwpe[r % T] += dout[r]. Split over columns, rows in order,
    /// so the sums are the same for any thread count.
    public static func backward(
        dwte: UnsafeMutablePointer<Float>, dwpe: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, tokens: UnsafePointer<Int32>, batch: Int, seq: Int, width d: Int
    ) {
        Parallel.forRanges(d, grain: vecWidth) { _, cols in
            for row in 0..<(batch * seq) {
                let g = dout + row * d
                let tok = dwte + Int(tokens[row]) * d
                let pos = dwpe + (row % seq) * d
                var c = cols.lowerBound
                while c + vecWidth <= cols.upperBound {
                    let v = loadVec(g + c)
                    storeVec(loadVec(tok + c) + v, tok + c)
                    storeVec(loadVec(pos + c) + v, pos + c)
                    c += vecWidth
                }
                while c < cols.upperBound { tok[c] += g[c]; pos[c] += g[c]; c += 1 }
            }
        }
    }
}
