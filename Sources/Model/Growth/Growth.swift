import Tensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A grown model and how it was grown.
public struct GrowthResult {
    public var config: ModelConfig
    public var parameters: FloatBuffer
    /// Adam's moments mapped to the grown layout when the plan carries them, else nil.
    public var moments: (m: FloatBuffer, v: FloatBuffer)?
    public var depth: DepthMap
    public var width: WidthMaps
}

/// Function-preserving model growth (docs/GROWTH.md, spec sections 2 and 3).
///
/// `grow` runs one growth event: depth (ELLE's copy-adjacent rule, or identity blocks) and width
/// on every layer (inserted ones included, each with its own head and FFN maps) in one pass over
/// the parameters, then symmetry-breaking noise; the branch outputs of inserted identity blocks
/// stay zero. The pieces are public for tests and for callers with their own maps: `expand`
/// (depth and width maps applied to parameters, or to a gradient or Adam moment), `widen` (width
/// growth as the pure function (parameters, config, maps) -> (parameters', config')),
/// `mapGradients`, `addNoise`.
///
/// Every step is deterministic from the plan's seed and independent of the thread count.
public enum Growth {
    public static func grow(parameters: FloatBuffer, config: ModelConfig, plan: GrowthPlan,
                            moments: (m: FloatBuffer, v: FloatBuffer)? = nil) throws -> GrowthResult {
        try config.validate()
        try plan.validate(source: config)
        try checkCount(parameters, config)
        if plan.moments == .carry {
            guard let moments else {
                throw GrowthPlanError(field: "moments", message: "carry needs Adam moments, and none were given")
            }
            guard moments.m.count == parameters.count, moments.v.count == parameters.count else {
                throw GrowthPlanError(field: "moments", message: "have \(moments.m.count) and \(moments.v.count) values for \(parameters.count) parameters")
            }
        }
        var depth = DepthMap.identity(config.layers)
        var deep = config  // the source with the grown depth: what the width maps are drawn for
        if plan.layers > config.layers {
            let (map, origins) = plan.depthMode == .stack
                ? DepthMap.stack(config: config, layers: plan.layers)
                : DepthMap.elle(config: config, layers: plan.layers, seed: plan.seed)
            depth = map
            deep.layers = plan.layers
            deep.layerOrigins = origins
        }
        let maps = WidthMaps.draw(from: deep, to: plan.target(source: deep), choice: plan.source, seed: plan.seed)
        var tensors = try tensorMaps(source: config, depth: depth, maps: maps)
        var target = maps.target(source: deep)
        if let length = plan.ramp {
            // Exactness comes from the mask: every unit starts undivided. What reads a new unit (a
            // weight's new input columns, the output norm's new entries, which the tied head
            // reads) starts at zero, so at m = 1 no input is counted twice: new units compute
            // copies of their sources' values and the next layers learn to read them.
            for i in tensors.indices {
                tensors[i].divideColumns = false
                tensors[i].gradientByRows = false
                tensors[i].gradientByColumns = false
                switch tensors[i].info.role {
                case .weight, .outputNorm: tensors[i].zeroNewColumns = true
                default: break
                }
            }
            target.ramp = GrowthRamp(length: length, oldWidth: config.width, oldHeads: config.heads, oldFFN: config.ffn,
                                     insertedLayers: depth.inserted.indices.filter { depth.inserted[$0] })
        }

        // An identity block keeps its branch outputs at zero (no noise) and starts its moments
        // from zero; a copied block starts from its original's values and moments.
        let identity = plan.depthMode == .identity
        let zeroParameter = { (t: TensorMap) in identity && t.inserted && t.info.writesResidualBranch }
        let grown = expand(parameters, tensors, count: target.parameterCount, gradientPower: nil, zero: zeroParameter)
        var grownMoments: (m: FloatBuffer, v: FloatBuffer)?
        if plan.moments == .carry, let moments {
            let zeroMoment = { (t: TensorMap) in identity && t.inserted }
            grownMoments = (expand(moments.m, tensors, count: target.parameterCount, gradientPower: 1, zero: zeroMoment),
                            expand(moments.v, tensors, count: target.parameterCount, gradientPower: 2, zero: zeroMoment))
        }
        if plan.noise > 0 {
            addNoise(grown, tensors, std: plan.noise, scope: plan.noiseScope, seed: plan.seed, skip: zeroParameter)
        }
        return GrowthResult(config: target, parameters: grown, moments: grownMoments, depth: depth, width: maps)
    }

    /// `buffer` laid out for `config`, carried through `depth` (grown layer l starts as layer
    /// depth.sources[l]) and then `maps` (drawn for the deepened model), in one pass. Parameters
    /// (`gradientPower` nil) follow the value rules; a gradient or Adam moment (power 1 for the
    /// gradient and first moment, 2 for the second moment) follows the gradient rule (see
    /// `TensorRole`). In inserted layers the tensors `zeroInserted` selects are zero. Returns the
    /// grown buffer and config.
    public static func expand(_ buffer: FloatBuffer, config: ModelConfig, depth: DepthMap, maps: WidthMaps,
                              gradientPower: Int? = nil, zeroInserted: (TensorGrowthInfo) -> Bool = { _ in false }) throws
        -> (buffer: FloatBuffer, config: ModelConfig) {
        try checkCount(buffer, config)
        let tensors = try tensorMaps(source: config, depth: depth, maps: maps)
        var deep = config
        deep.layers = depth.sources.count
        let target = maps.target(source: deep)
        try target.validate()
        return (expand(buffer, tensors, count: target.parameterCount, gradientPower: gradientPower) { $0.inserted && zeroInserted($0.info) },
                target)
    }

    /// Width growth as a pure function: the parameters of `config` grown by `maps` (same layer
    /// count), and the grown config. No noise.
    public static func widen(_ parameters: FloatBuffer, config: ModelConfig, maps: WidthMaps) throws
        -> (parameters: FloatBuffer, config: ModelConfig) {
        let grown = try expand(parameters, config: config, depth: .identity(config.layers), maps: maps)
        return (grown.buffer, grown.config)
    }

    /// A gradient-shaped buffer of `config` (a gradient or Adam's first moment with power 1, its
    /// second moment with power 2) mapped by width maps: each entry is its source entry divided by
    /// c^power, c the copy count of the value the tensor writes (see `TensorRole`). With affine
    /// norms and no noise, the grown model's gradient equals the mapped gradient.
    public static func mapGradients(_ buffer: FloatBuffer, config: ModelConfig, maps: WidthMaps, power: Int) throws -> FloatBuffer {
        try expand(buffer, config: config, depth: .identity(config.layers), maps: maps, gradientPower: power).buffer
    }

    /// Adds N(0, std^2) to `parameters`, which are `config` widened by `maps`: with `.copies`
    /// only on entries of new units (a new row or a new column), with `.all` on every entry.
    /// Each entry's draw is a hash of (seed, tensor, index), so the noise does not depend on the
    /// thread count.
    public static func addNoise(_ parameters: FloatBuffer, config: ModelConfig, maps: WidthMaps, std: Float,
                                scope: GrowthPlan.NoiseScope, seed: UInt64) throws {
        let target = maps.target(source: config)
        guard parameters.count == target.parameterCount else {
            throw GrowthPlanError(field: "parameters", message: "has \(parameters.count) values but \(target) needs \(target.parameterCount)")
        }
        let tensors = try tensorMaps(source: config, depth: .identity(config.layers), maps: maps)
        addNoise(parameters, tensors, std: std, scope: scope, seed: seed) { _ in false }
    }

    // MARK: machinery

    /// How one tensor of the grown layout reads the source layout (vectors are one-row matrices).
    struct TensorMap {
        var sourceOffset: Int
        var targetOffset: Int
        var rows: AxisMap
        var cols: AxisMap
        /// Value rule: columns divided by their copy counts.
        var divideColumns = false
        /// Gradient rule: divided by the copy count of the row or of the column.
        var gradientByRows = false
        var gradientByColumns = false
        var info: TensorGrowthInfo
        /// Whether the tensor belongs to a layer inserted by the depth map.
        var inserted: Bool
        /// Entries in new columns start at zero (a masked ramp's weights that read new units).
        var zeroNewColumns = false
    }

    static func checkCount(_ buffer: FloatBuffer, _ config: ModelConfig) throws {
        guard buffer.count == config.parameterCount else {
            throw GrowthPlanError(field: "parameters", message: "has \(buffer.count) values but \(config) needs \(config.parameterCount)")
        }
    }

    /// Every grown tensor's source tensor, axes and scalings, from its role.
    static func tensorMaps(source config: ModelConfig, depth: DepthMap, maps: WidthMaps) throws -> [TensorMap] {
        guard depth.inserted.count == depth.sources.count, depth.sources.allSatisfy({ (0..<config.layers).contains($0) }) else {
            throw GrowthPlanError(field: "depth map", message: "must name a source layer in 0..<\(config.layers) for each grown layer")
        }
        var deep = config
        deep.layers = depth.sources.count
        try maps.validate(source: deep)
        let target = maps.target(source: deep)
        var sourceSpec: [String: TensorSpec] = [:]
        for spec in config.parameterTensors { sourceSpec[spec.name] = spec }

        let residual = AxisMap(units: maps.residual, old: config.width)
        let one = AxisMap.identity(1)
        var attention: [Int: AxisMap] = [:], qkv: [Int: AxisMap] = [:], ffn: [Int: AxisMap] = [:]
        func axis(_ a: TensorRole.Axis, layer: Int?, fixed: Int) -> AxisMap {
            switch a {
            case .fixed: return fixed == 1 ? one : .identity(fixed)
            case .residual: return residual
            case .ffn:
                let l = layer!
                if ffn[l] == nil { ffn[l] = AxisMap(units: maps.ffn[l], old: config.ffn) }
                return ffn[l]!
            case .attention, .qkv:
                let l = layer!
                if attention[l] == nil {
                    attention[l] = AxisMap(units: maps.heads[l], old: config.heads, size: config.headDim)
                    qkv[l] = attention[l]!.repeated(3)
                }
                return a == .qkv ? qkv[l]! : attention[l]!
            }
        }

        var result: [TensorMap] = []
        for declaration in target.layout.declarations {
            let grown = declaration.spec, info = declaration.growth
            var name = grown.name
            var inserted = false
            if let l = info.layer {
                name = "blocks.\(depth.sources[l])." + grown.name.dropFirst("blocks.\(l).".count)
                inserted = depth.inserted[l]
            }
            let source = sourceSpec[name]!
            var t = TensorMap(sourceOffset: source.offset, targetOffset: grown.offset, rows: one, cols: one,
                              info: info, inserted: inserted)
            switch info.role {
            case .embedding:
                t.rows = axis(.fixed, layer: info.layer, fixed: grown.shape[0])
                t.cols = residual
                t.gradientByColumns = true
            case .norm:
                t.cols = residual
                t.gradientByColumns = true
            case .outputNorm:
                t.cols = residual
                t.divideColumns = true
            case .weight(let out, let input):
                t.rows = axis(out, layer: info.layer, fixed: grown.shape[0])
                t.cols = axis(input, layer: info.layer, fixed: grown.shape[1])
                t.divideColumns = true
                t.gradientByRows = true
            case .bias(let out):
                t.cols = axis(out, layer: info.layer, fixed: grown.shape[0])
                t.gradientByColumns = true
            }
            precondition(t.rows.newCount * t.cols.newCount == grown.count && t.rows.oldCount * t.cols.oldCount == source.count,
                         "growth rule for \(grown.name) does not match its shape \(grown.shape)")
            result.append(t)
        }
        return result
    }

    /// One pass of the value rule (`gradientPower` nil) or the gradient rule over every tensor.
    static func expand(_ buffer: FloatBuffer, _ tensors: [TensorMap], count: Int, gradientPower: Int?,
                       zero: (TensorMap) -> Bool) -> FloatBuffer {
        let out = FloatBuffer(count: count, zeroed: false)
        for t in tensors {
            let dst = out.pointer + t.targetOffset
            if zero(t) {
                dst.update(repeating: 0, count: t.rows.newCount * t.cols.newCount)
                continue
            }
            gather(into: dst, from: buffer.pointer + t.sourceOffset, rows: t.rows, cols: t.cols,
                   divideRows: gradientPower != nil && t.gradientByRows,
                   divideCols: gradientPower == nil ? t.divideColumns : t.gradientByColumns,
                   power: gradientPower ?? 1)
            if t.zeroNewColumns {
                let width = t.cols.newCount, isNew = t.cols.isNew.pointer
                let columns = (0..<width).filter { isNew[$0] }
                for r in 0..<t.rows.newCount { for c in columns { dst[r * width + c] = 0 } }
            }
        }
        return out
    }

    /// dst[r, c] = src[rows.source[r], cols.source[c]] / (row count^power if divideRows) /
    /// (column count^power if divideCols). Split over rows; the columns' identity prefix is read
    /// contiguously.
    static func gather(into dst: UnsafeMutablePointer<Float>, from src: UnsafePointer<Float>,
                       rows: AxisMap, cols: AxisMap, divideRows: Bool, divideCols: Bool, power: Int) {
        let oldWidth = cols.oldCount, newWidth = cols.newCount, prefix = cols.identityPrefix
        func divisors(_ counts: FloatBuffer) -> FloatBuffer {
            FloatBuffer((0..<counts.count).map { Float(pow(Double(counts[$0]), Double(power))) })
        }
        let rowDivisor = divideRows ? divisors(rows.count) : nil
        let columnDivisor = divideCols ? divisors(cols.count) : nil
        let rowSource = rows.source.pointer, colSource = cols.source.pointer
        let rowDivide = rowDivisor?.pointer, columnDivide = columnDivisor?.pointer
        defer { withExtendedLifetime((rowDivisor, columnDivisor)) {} }
        Parallel.forRanges(rows.newCount, minimum: max(1, (1 << 15) / max(newWidth, 1))) { _, range in
            for r in range {
                let s = src + Int(rowSource[r]) * oldWidth, d = dst + r * newWidth
                if let columnDivide {
                    for c in 0..<prefix { d[c] = s[c] / columnDivide[c] }
                    for c in prefix..<newWidth { d[c] = s[Int(colSource[c])] / columnDivide[c] }
                } else {
                    d.update(from: s, count: prefix)
                    for c in prefix..<newWidth { d[c] = s[Int(colSource[c])] }
                }
                if let rowDivide {
                    let divisor = rowDivide[r]
                    if divisor != 1 { for c in 0..<newWidth { d[c] /= divisor } }
                }
            }
        }
    }

    /// Adds noise to every tensor not `skip`ped: to all entries, or to those of new units (new
    /// rows entirely; in old rows, the runs of new columns).
    static func addNoise(_ parameters: FloatBuffer, _ tensors: [TensorMap], std: Float, scope: GrowthPlan.NoiseScope,
                         seed: UInt64, skip: (TensorMap) -> Bool) {
        for (index, t) in tensors.enumerated() where !skip(t) {
            let keys = SplitMix64.mix(seed, 5, UInt64(index))
            let key = (UInt32(truncatingIfNeeded: keys), UInt32(truncatingIfNeeded: keys >> 32))
            let p = parameters.pointer + t.targetOffset
            let width = t.cols.newCount
            var runs: [Range<Int>] = []
            if scope == .all {
                runs = [0..<width]
            } else {
                var c = 0
                while c < width {
                    if !t.cols.isNew[c] { c += 1; continue }
                    let start = c
                    while c < width && t.cols.isNew[c] { c += 1 }
                    runs.append(start..<c)
                }
            }
            let rowIsNew = t.rows.isNew.pointer
            let anyNewRow = scope == .all || (0..<t.rows.newCount).contains { rowIsNew[$0] }
            if runs.isEmpty && !anyNewRow { continue }
            Parallel.forRanges(t.rows.newCount, minimum: max(1, (1 << 13) / width)) { _, rows in
                for r in rows {
                    if rowIsNew[r] {
                        addGaussian(p + r * width, count: width, index: r * width, key: key, std: std)
                    } else {
                        for run in runs {
                            addGaussian(p + r * width + run.lowerBound, count: run.count, index: r * width + run.lowerBound,
                                        key: key, std: std)
                        }
                    }
                }
            }
        }
    }

    /// p[k] += std * N(0, 1) draw of element index + k, for k < count. The draw of element i is
    /// Box-Muller on two counter hashes of i, computed 16 lanes at a time (a tail goes through
    /// the same vector code), so it depends only on (key, i).
    @inline(__always)
    static func addGaussian(_ p: UnsafeMutablePointer<Float>, count: Int, index: Int, key: (UInt32, UInt32), std: Float) {
        let k1 = SIMD16<UInt32>(repeating: CounterHash.mix(key.0)), k2 = SIMD16<UInt32>(repeating: CounterHash.mix(key.1))
        let lanes = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let s = Vec(repeating: std)
        var k = 0
        while k < count {
            let i = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: index + k)) &+ lanes
            let z = s * gaussianVec(CounterHash.mix(i ^ k1), CounterHash.mix(i ^ k2))
            let n = min(vecWidth, count - k)
            if n == vecWidth { storeVec(loadVec(p + k) + z, p + k) } else { storePartial(loadPartial(p + k, n) + z, p + k, n) }
            k += vecWidth
        }
    }

    /// Box-Muller: sqrt(-2 ln u1) cos(2 pi u2) with u1 in (0, 1] and u2 in [0, 1) made from the
    /// top 23 bits of two hashes. Written with bit patterns, fused multiply-adds and a Newton
    /// square root so every step stays in vector registers (no scalar conversions or sqrtf calls).
    @inline(__always)
    static func gaussianVec(_ h1: SIMD16<UInt32>, _ h2: SIMD16<UInt32>) -> Vec {
        let one = SIMD16<UInt32>(repeating: 0x3F80_0000)
        let u1 = Vec(repeating: 2) - unsafeBitCast(one | (h1 &>> 9), to: Vec.self)  // (0, 1]
        let u2 = unsafeBitCast(one | (h2 &>> 9), to: Vec.self) - Vec(repeating: 1)  // [0, 1)
        return squareRootVec(Vec(repeating: -2) * logVec(u1)) * cos2piVec(u2)
    }

    /// sqrt(x) for x >= 0 as x / sqrt(x): the classic reciprocal-square-root guess refined by
    /// three Newton steps (relative error below 1e-7); 0 for x = 0.
    @inline(__always)
    static func squareRootVec(_ x: Vec) -> Vec {
        let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
        var y = unsafeBitCast(SIMD16<UInt32>(repeating: 0x5F37_59DF) &- (bits &>> 1), to: Vec.self)
        let half = Vec(repeating: 0.5) * x, threeHalves = Vec(repeating: 1.5)
        for _ in 0..<3 { y = y * threeHalves.addingProduct(-half, y * y) }
        return x * y
    }

    /// ln x for x in (0, 1] (Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), then a
    /// degree-9 polynomial in m - 1; relative error about 1e-7).
    @inline(__always)
    static func logVec(_ x: Vec) -> Vec {
        let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
        // e + 127 as a float: the exponent bits placed in the mantissa of 2^23, minus 2^23.
        let biased = unsafeBitCast(SIMD16<UInt32>(repeating: 0x4B00_0000) | (bits &>> 23), to: Vec.self)
        var e = biased - Vec(repeating: 8_388_608 + 127)
        var m = unsafeBitCast((bits & 0x7F_FFFF) | 0x3F80_0000, to: Vec.self)  // [1, 2)
        let big = m .> Vec(repeating: 1.414_213_56)
        m.replace(with: m * Vec(repeating: 0.5), where: big)
        e.replace(with: e + Vec(repeating: 1), where: big)
        let f = m - Vec(repeating: 1)
        let z = f * f
        var y = Vec(repeating: 7.037_683_629_2e-2)
        for c: Float in [-1.151_461_031_0e-1, 1.167_699_874_0e-1, -1.242_014_084_6e-1, 1.424_932_278_7e-1,
                         -1.666_805_766_5e-1, 2.000_071_476_5e-1, -2.499_999_399_3e-1, 3.333_333_117_4e-1] {
            y = Vec(repeating: c).addingProduct(y, f)
        }
        y = (y * f * z).addingProduct(Vec(repeating: -0.5), z)
        return (f + y).addingProduct(e, Vec(repeating: 0.693_147_18))
    }

    /// cos(2 pi u) for u in [0, 1): reduced by symmetry to cos(y), y in [0, pi/2], then its
    /// Taylor series to y^12 (error below 1e-8).
    @inline(__always)
    static func cos2piVec(_ u: Vec) -> Vec {
        // cos(2 pi u) = -cos(2 pi t) with t = |u - 1/2| in [0, 1/2]; for t > 1/4,
        // cos(2 pi t) = -cos(2 pi (1/2 - t)).
        var t = u - Vec(repeating: 0.5)
        t.replace(with: -t, where: t .< Vec())
        var sign = Vec(repeating: -1)
        let far = t .> Vec(repeating: 0.25)
        t.replace(with: Vec(repeating: 0.5) - t, where: far)
        sign.replace(with: Vec(repeating: 1), where: far)
        let y = t * Vec(repeating: 2 * Float.pi), y2 = y * y
        var c = Vec(repeating: 1.0 / 479_001_600)
        for k: Float in [-1.0 / 3_628_800, 1.0 / 40320, -1.0 / 720, 1.0 / 24, -0.5, 1] {
            c = Vec(repeating: k).addingProduct(c, y2)
        }
        return sign * c
    }
}
