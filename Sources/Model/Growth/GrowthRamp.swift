import Tensors

/// A masked ramp in progress (MSG, spec section 9; docs/GROWTH.md, "Masked ramp"): the units a
/// growth added enter through a scalar mask m = `done` / `length` that goes from 0 at the growth
/// to 1 after `length` updates.
///
/// - new residual dimensions (index >= `oldWidth`): the embedding sum and every LayerNorm output
///   are multiplied by the dimension mask (1 on old dimensions, m on new ones), and every
///   LayerNorm takes its mean and variance as mask-weighted averages;
/// - new heads (index >= `oldHeads` in every layer): their value vectors, hence their outputs,
///   are multiplied by m;
/// - new FFN units (index >= `oldFFN`): their activations are multiplied by m;
/// - inserted layers (`insertedLayers`): a block computes h + m (f(h) - h); pre-LN (GPT) as both
///   residual branches scaled by m, which is the same at m = 0 and m = 1.
///
/// At m = 0 the grown model computes exactly the old function whatever the new weights are (for
/// post-LN BERT too); at m = 1 it is the plain grown model, and the ramp is dropped from the config
/// (`advanced()` returns nil). Part of `ModelConfig`, so checkpoints, broadcasts and replica checks
/// carry it, and a resume in the middle of a ramp continues from the same m.
public struct GrowthRamp: Codable, Equatable, Sendable {
    /// Updates from m = 0 to m = 1.
    public var length: Int
    /// Updates done since the growth.
    public var done: Int
    /// The sizes before the growth: units at or above them are new.
    public var oldWidth: Int
    public var oldHeads: Int
    public var oldFFN: Int
    /// The blocks the growth inserted (ascending).
    public var insertedLayers: [Int]

    public init(length: Int, done: Int = 0, oldWidth: Int, oldHeads: Int, oldFFN: Int, insertedLayers: [Int]) {
        self.length = length
        self.done = done
        self.oldWidth = oldWidth
        self.oldHeads = oldHeads
        self.oldFFN = oldFFN
        self.insertedLayers = insertedLayers
    }

    /// The mask of new units now.
    public var mask: Float { length > 0 ? min(1, Float(done) / Float(length)) : 1 }

    /// The ramp after one more update, or nil once it is complete.
    public func advanced() -> GrowthRamp? {
        var next = self
        next.done += 1
        return next.done >= length ? nil : next
    }

    /// Throws naming the first field that does not fit `config`.
    func validate(_ c: ModelConfig) throws {
        let check = ConfigError.check
        try check(length >= 1 && done >= 0 && done < length, "ramp",
                  "needs length >= 1 and 0 <= done < length (got done \(done) of \(length))")
        try check(oldWidth >= 1 && oldWidth <= c.width, "ramp.oldWidth", "must be in 1...\(c.width) (got \(oldWidth))")
        try check(oldHeads >= 1 && oldHeads <= c.heads && oldHeads * c.headDim == oldWidth, "ramp.oldHeads",
                  "must be oldWidth / headDim = \(oldWidth / max(c.headDim, 1)) (got \(oldHeads))")
        try check(oldFFN >= 1 && oldFFN <= c.ffn, "ramp.oldFFN", "must be in 1...\(c.ffn) (got \(oldFFN))")
        try check(insertedLayers.allSatisfy { (0..<c.layers).contains($0) } && insertedLayers == insertedLayers.sorted(),
                  "ramp.insertedLayers", "must be ascending block indices in 0..<\(c.layers)")
        try check(c.normalization == .layerNorm || c.normalization == .affine, "ramp", "needs a model with norms")
    }
}

/// The masks of one pass, made from the config's ramp at the start of forward (nil when the
/// config has none): what the layers multiply by.
struct RampMasks {
    let m: Float
    /// (D): 1 on old residual dimensions, m on new ones; the LayerNorms' statistics weights.
    let dimensions: FloatBuffer
    let oldWidth: Int
    /// Columns of the fused qkv output from which the new heads' value vectors start (2A + old heads x headDim).
    let newValueColumns: Int
    let oldFFN: Int
    let inserted: Set<Int>

    init?(_ c: ModelConfig) {
        guard let ramp = c.ramp else { return nil }
        m = ramp.mask
        oldWidth = ramp.oldWidth
        dimensions = FloatBuffer((0..<c.width).map { $0 < ramp.oldWidth ? 1 : ramp.mask })
        newValueColumns = 2 * c.attentionWidth + ramp.oldHeads * c.headDim
        oldFFN = ramp.oldFFN
        inserted = Set(ramp.insertedLayers)
    }

    /// The LayerNorm mask when the width grew.
    var norm: LayerNorm.DimensionMask? {
        oldWidth < dimensions.count ? LayerNorm.DimensionMask(weights: UnsafePointer(dimensions.pointer)) : nil
    }

    /// The scale of block l's residual branches: m for an inserted block, else nil (1).
    func branchScale(layer l: Int) -> Float? { inserted.contains(l) ? m : nil }

    /// Multiplies columns from..<width of a (rows, width) matrix by m (in place).
    func scaleColumns(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, from first: Int) {
        guard first < width, m != 1 else { return }
        Parallel.forRanges(rows, minimum: 64) { _, range in
            for r in range {
                let row = x + r * width + first
                for c in 0..<(width - first) { row[c] *= m }
            }
        }
    }

    /// The new residual dimensions of (rows, D) values times m (the embedding sum, its gradient).
    func scaleNewDimensions(_ x: UnsafeMutablePointer<Float>, rows: Int) {
        scaleColumns(x, rows: rows, width: dimensions.count, from: oldWidth)
    }

    /// The new heads' value vectors (forward) or their gradients (backward) in a (rows, 3A) qkv.
    func scaleNewValues(_ qkv: UnsafeMutablePointer<Float>, rows: Int, attentionWidth a: Int) {
        scaleColumns(qkv, rows: rows, width: 3 * a, from: newValueColumns)
    }

    /// The new FFN units' activation gradients in a (rows, F) matrix.
    func scaleNewUnits(_ x: UnsafeMutablePointer<Float>, rows: Int, ffn f: Int) {
        scaleColumns(x, rows: rows, width: f, from: oldFFN)
    }

    /// The activation's column mask for (rows, F) outputs when the FFN grew.
    var ffnMask: ColumnMask? { ColumnMask(first: oldFFN, scale: m) }
}

/// out = x + m (y - x): the output of a block a masked ramp inserted (post-LN), written where the
/// block's output goes (float32 and/or bf16); out's float32 values may be y itself.
struct RampBlend: SinkKernel {
    let y: UnsafePointer<Float>, x: UnsafePointer<Float>, m: Float, count: Int

    func run(into out: OperandOutput) { out.run(self) }

    func run<Sink: VectorSink>(_ out: Sink) {
        let mv = Vec(repeating: m)
        Parallel.forRanges(count, grain: 256, minimum: 4096) { _, r in
            var i = r.lowerBound
            while i + vecWidth <= r.upperBound {
                let xv = loadVec(x + i)
                out.store(xv.addingProduct(mv, loadVec(y + i) - xv), at: i)
                i += vecWidth
            }
            if i < r.upperBound {
                let k = r.upperBound - i, xv = loadPartial(x + i, k)
                out.storePartial(xv.addingProduct(mv, loadPartial(y + i, k) - xv), at: i, count: k)
            }
        }
    }
}
