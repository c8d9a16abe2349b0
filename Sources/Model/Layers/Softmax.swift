import Tensors

/// The row kernels of attention's softmax (`Attention`), float32 in every precision.
extension Attention {
    /// In place: row[0..<length] = softmax(row[0..<length]); row[length..<stride] = 0.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, length n: Int, stride: Int) {
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
