import Tensors

/// y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension (biased variance).
/// With `affine` (the `Normalization.affine` diagnostic) the statistics are pinned to mean 0 and
/// rstd 1, so y = x * weight + bias and backward passes dout * weight straight through.
public enum LayerNorm {
    /// A LayerNorm over a masked width (a masked ramp, `GrowthRamp`): with weights w (D) the mean
    /// and variance are w-weighted averages (sum w x / sum w) and the output is multiplied by w,
    /// so dimensions of weight 0 neither move the statistics nor reach the output.
    public struct DimensionMask {
        public let weights: UnsafePointer<Float>
        public init(weights: UnsafePointer<Float>) { self.weights = weights }
    }

    /// out, x (N, D); mean, rstd (N) saved for backward; weight, bias (D). `out` is float32, or
    /// bf16 (or both) when products read it under mixed precision; the statistics are float32.
    public static func forward(
        out: OperandOutput, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows n: Int, width d: Int,
        epsilon: Float, affine: Bool = false, mask: DimensionMask? = nil
    ) {
        if let mask {
            out.run(MaskedForward(mean: mean, rstd: rstd, x: x, weight: weight, bias: bias, mask: mask.weights,
                                  n: n, d: d, epsilon: epsilon, affine: affine))
            return
        }
        out.run(Forward(mean: mean, rstd: rstd, x: x, weight: weight, bias: bias, n: n, d: d, epsilon: epsilon, affine: affine))
    }

    private struct MaskedForward: SinkKernel {
        let mean, rstd: UnsafeMutablePointer<Float>
        let x, weight, bias, mask: UnsafePointer<Float>
        let n, d: Int
        let epsilon: Float, affine: Bool

        func run<Sink: VectorSink>(_ out: Sink) {
            var total: Float = 0
            for c in 0..<d { total += mask[c] }
            Parallel.forRanges(n, minimum: 8) { _, rows in
                for row in rows {
                    let xr = x + row * d
                    var m: Float = 0
                    if !affine {
                        for c in 0..<d { m += mask[c] * xr[c] }
                        m /= total
                    }
                    var variance: Float = 0
                    for c in 0..<d { let t = xr[c] - m; variance += mask[c] * t * t }
                    let s = affine ? 1 : 1 / (variance / total + epsilon).squareRoot()
                    mean[row] = m
                    rstd[row] = s
                    var c = 0
                    while c < d {
                        let k = min(vecWidth, d - c)
                        var y = Vec()
                        for j in 0..<k { y[j] = mask[c + j] * bias[c + j].addingProduct((xr[c + j] - m) * s, weight[c + j]) }
                        if k == vecWidth { out.store(y, at: row * d + c) } else { out.storePartial(y, at: row * d + c, count: k) }
                        c += k
                    }
                }
            }
        }
    }

    private struct Forward: SinkKernel {
        let mean, rstd: UnsafeMutablePointer<Float>
        let x, weight, bias: UnsafePointer<Float>
        let n, d: Int
        let epsilon: Float, affine: Bool

        func run<Sink: VectorSink>(_ out: Sink) {
            Parallel.forRanges(n, minimum: 8) { _, rows in
                for row in rows {
                    let xr = x + row * d
                    let m = affine ? 0 : rowSum(xr, d) / Float(d)
                    var acc = Vec()
                    var c = 0
                    let mv = Vec(repeating: m)
                    while c + vecWidth <= d { let t = loadVec(xr + c) - mv; acc = acc.addingProduct(t, t); c += vecWidth }
                    if c < d { let t = loadPartial(xr + c, d - c, fill: m) - mv; acc = acc.addingProduct(t, t) }
                    let variance = horizontalSum(acc) / Float(d)
                    let s = affine ? 1 : 1 / (variance + epsilon).squareRoot()
                    mean[row] = m
                    rstd[row] = s
                    let o = row * d
                    let sv = Vec(repeating: s)
                    c = 0
                    while c + vecWidth <= d {
                        let xh = (loadVec(xr + c) - mv) * sv
                        out.store(loadVec(bias + c).addingProduct(xh, loadVec(weight + c)), at: o + c)
                        c += vecWidth
                    }
                    while c < d { out.store(bias[c].addingProduct((xr[c] - m) * s, weight[c]), at: o + c); c += 1 }
                }
            }
        }
    }

    /// Float32 output.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows n: Int, width d: Int,
        epsilon: Float, affine: Bool = false
    ) {
        forward(out: .float(out), mean: mean, rstd: rstd, x: x, weight: weight, bias: bias, rows: n, width: d,
                epsilon: epsilon, affine: affine)
    }

    /// dx += LN'(dout); dweight += sum_rows dout * xhat; dbias += sum_rows dout.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
        rows n: Int, width d: Int, affine: Bool = false, mask: DimensionMask? = nil
    ) {
        if let mask {
            maskedBackward(dx: dx, dweight: dweight, dbias: dbias, dout: dout, x: x, weight: weight, mean: mean, rstd: rstd,
                           mask: mask.weights, n: n, d: d, affine: affine)
            return
        }
        // dx, row by row: dnorm = dout * w; dx = (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd
        Parallel.forRanges(n, minimum: 8) { _, rows in
            for row in rows {
                let xr = x + row * d, g = dout + row * d, dxr = dx + row * d
                let mv = Vec(repeating: mean[row]), sv = Vec(repeating: rstd[row])
                var sumDnorm = Vec(), sumDnormXhat = Vec()
                var c = 0
                while c + vecWidth <= d {
                    let xh = (loadVec(xr + c) - mv) * sv
                    let dn = loadVec(g + c) * loadVec(weight + c)
                    sumDnorm += dn
                    sumDnormXhat = sumDnormXhat.addingProduct(dn, xh)
                    c += vecWidth
                }
                if c < d {
                    let k = d - c
                    let xh = (loadPartial(xr + c, k) - mv) * sv
                    let dn = loadPartial(g + c, k) * loadPartial(weight + c, k)
                    sumDnorm += dn
                    sumDnormXhat = sumDnormXhat.addingProduct(dn, xh)
                }
                let a = affine ? Vec() : Vec(repeating: horizontalSum(sumDnorm) / Float(d))
                let b = affine ? Vec() : Vec(repeating: horizontalSum(sumDnormXhat) / Float(d))
                c = 0
                while c + vecWidth <= d {
                    let xh = (loadVec(xr + c) - mv) * sv
                    let dn = loadVec(g + c) * loadVec(weight + c)
                    let v = (dn - a - xh * b) * sv
                    storeVec(loadVec(dxr + c) + v, dxr + c)
                    c += vecWidth
                }
                if c < d {
                    let k = d - c
                    let xh = (loadPartial(xr + c, k) - mv) * sv
                    let dn = loadPartial(g + c, k) * loadPartial(weight + c, k)
                    storePartial(loadPartial(dxr + c, k) + (dn - a - xh * b) * sv, dxr + c, k)
                }
            }
        }
        // dweight, dbias: split over columns, rows summed in order.
        Parallel.forRanges(d, grain: vecWidth) { _, cols in
            for row in 0..<n {
                let xr = x + row * d, g = dout + row * d
                let mv = Vec(repeating: mean[row]), sv = Vec(repeating: rstd[row])
                var c = cols.lowerBound
                while c + vecWidth <= cols.upperBound {
                    let gv = loadVec(g + c)
                    let xh = (loadVec(xr + c) - mv) * sv
                    storeVec(loadVec(dweight + c).addingProduct(gv, xh), dweight + c)
                    storeVec(loadVec(dbias + c) + gv, dbias + c)
                    c += vecWidth
                }
                if c < cols.upperBound {
                    let k = cols.upperBound - c
                    let gv = loadPartial(g + c, k)
                    let xh = (loadPartial(xr + c, k) - mv) * sv
                    storePartial(loadPartial(dweight + c, k).addingProduct(gv, xh), dweight + c, k)
                    storePartial(loadPartial(dbias + c, k) + gv, dbias + c, k)
                }
            }
        }
    }

    /// The masked LayerNorm's backward: with g = dout * w (the output mask) and dn = g * weight,
    /// dx_j += rstd (dn_j - w_j / W sum dn - w_j / W xhat_j sum dn xhat) where W = sum w (the
    /// weighted statistics' derivative); dweight += sum_rows g xhat; dbias += sum_rows g.
    private static func maskedBackward(
        dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, mean: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, mask: UnsafePointer<Float>, n: Int, d: Int, affine: Bool
    ) {
        var total: Float = 0
        for c in 0..<d { total += mask[c] }
        Parallel.forRanges(n, minimum: 8) { _, rows in
            for row in rows {
                let xr = x + row * d, g = dout + row * d, dxr = dx + row * d
                let m = mean[row], s = rstd[row]
                var sumDnorm: Float = 0, sumDnormXhat: Float = 0
                for c in 0..<d {
                    let dn = g[c] * mask[c] * weight[c]
                    sumDnorm += dn
                    sumDnormXhat += dn * (xr[c] - m) * s
                }
                let a = affine ? 0 : sumDnorm / total, b = affine ? 0 : sumDnormXhat / total
                for c in 0..<d {
                    let dn = g[c] * mask[c] * weight[c], xh = (xr[c] - m) * s
                    dxr[c] += (dn - mask[c] * (a + xh * b)) * s
                }
            }
        }
        Parallel.forRanges(d, grain: vecWidth) { _, cols in
            for row in 0..<n {
                let xr = x + row * d, g = dout + row * d
                let m = mean[row], s = rstd[row]
                for c in cols {
                    let gw = g[c] * mask[c]
                    dweight[c] += gw * (xr[c] - m) * s
                    dbias[c] += gw
                }
            }
        }
    }

    @inline(__always)
    static func rowSum(_ p: UnsafePointer<Float>, _ d: Int) -> Float {
        var acc = Vec()
        var c = 0
        while c + vecWidth <= d { acc += loadVec(p + c); c += vecWidth }
        if c < d { acc += loadPartial(p + c, d - c) }
        return horizontalSum(acc)
    }
}
