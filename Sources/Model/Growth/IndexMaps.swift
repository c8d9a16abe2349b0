import Tensors

/// The width maps of one growth event (spec section 2). Every map sends a unit of the grown model
/// to the unit of the source model it copies; the first `old` entries are the identity, so the
/// units at index >= old are the new copies. Unit maps are per residual dimension, per head and
/// per FFN unit; `AxisMap` expands them to tensor indices.
public struct WidthMaps: Codable, Equatable, Sendable {
    /// g: residual dimension of the grown model -> residual dimension of the source (one global map).
    public var residual: [Int]
    /// Per layer of the grown model: head -> head of the source layer.
    public var heads: [[Int]]
    /// Per layer of the grown model: FFN unit -> FFN unit of the source layer.
    public var ffn: [[Int]]

    public init(residual: [Int], heads: [[Int]], ffn: [[Int]]) {
        self.residual = residual
        self.heads = heads
        self.ffn = ffn
    }

    /// Draws the maps from `source` to `target` (same layer count): new units pick their source
    /// uniformly at random or round-robin (i mod old size), from streams seeded by (seed, map, layer).
    public static func draw(from source: ModelConfig, to target: ModelConfig, choice: GrowthPlan.Source,
                            seed: UInt64) -> WidthMaps {
        func draw(_ old: Int, _ new: Int, _ stream: UInt64, _ layer: Int) -> [Int] {
            var rng = Xoshiro256(seed: SplitMix64.mix(seed, stream, UInt64(layer)))
            return (0..<new).map { i in
                if i < old { return i }
                switch choice {
                case .random: return rng.nextInt(below: old)
                case .roundRobin: return i % old
                }
            }
        }
        return WidthMaps(
            residual: draw(source.width, target.width, 2, 0),
            heads: (0..<target.layers).map { draw(source.heads, target.heads, 3, $0) },
            ffn: (0..<target.layers).map { draw(source.ffn, target.ffn, 4, $0) })
    }

    /// Maps that change nothing.
    public static func identity(_ c: ModelConfig) -> WidthMaps {
        WidthMaps(residual: Array(0..<c.width), heads: Array(repeating: Array(0..<c.heads), count: c.layers),
                  ffn: Array(repeating: Array(0..<c.ffn), count: c.layers))
    }

    /// The config these maps grow `source` into.
    public func target(source c: ModelConfig) -> ModelConfig {
        var t = c
        t.width = residual.count
        t.heads = heads.first?.count ?? c.heads
        t.ffn = ffn.first?.count ?? c.ffn
        return t
    }

    /// Checks the maps fit `source`: one head and FFN map per layer, equal sizes across layers,
    /// identity on the old units, every old unit copied at least once (a count of 0 would leave a
    /// unit unread). Throws naming the map.
    public func validate(source c: ModelConfig) throws {
        func check(_ map: [Int], old: Int, new: Int?, _ name: String) throws {
            if let new, map.count != new {
                throw GrowthPlanError(field: name, message: "has \(map.count) entries, expected \(new)")
            }
            if map.count < old {
                throw GrowthPlanError(field: name, message: "has \(map.count) entries, fewer than the \(old) units it grows")
            }
            for (i, j) in map.enumerated() {
                if i < old && j != i {
                    throw GrowthPlanError(field: name, message: "must keep unit \(i) in place (maps it to \(j))")
                }
                if j < 0 || j >= old {
                    throw GrowthPlanError(field: name, message: "sends unit \(i) to \(j), outside 0..<\(old)")
                }
            }
        }
        try check(residual, old: c.width, new: nil, "maps.residual")
        guard heads.count == c.layers, ffn.count == c.layers else {
            throw GrowthPlanError(field: "maps", message: "need one head and one FFN map per layer (\(c.layers)), got \(heads.count) and \(ffn.count)")
        }
        let n = heads.first?.count ?? c.heads, f = ffn.first?.count ?? c.ffn
        for l in 0..<c.layers {
            try check(heads[l], old: c.heads, new: n, "maps.heads[\(l)]")
            try check(ffn[l], old: c.ffn, new: f, "maps.ffn[\(l)]")
        }
        if residual.count != n * c.headDim {
            throw GrowthPlanError(field: "maps.heads", message: "give \(n) heads of \(c.headDim) dims, which does not match the grown width \(residual.count)")
        }
    }
}

/// One axis of a parameter tensor under growth: grown index i reads source index `source[i]`,
/// which `count[i]` grown indices read in all; `isNew[i]` marks indices of new units (where
/// `copies`-scope noise goes). The first `identityPrefix` indices read themselves.
final class AxisMap {
    let source: Buffer<Int32>
    let count: FloatBuffer
    let isNew: Buffer<Bool>
    let oldCount: Int
    let identityPrefix: Int
    var newCount: Int { source.count }

    init(source: [Int32], count: [Float], isNew: [Bool], oldCount: Int) {
        self.source = Buffer(source)
        self.count = FloatBuffer(count)
        self.isNew = Buffer(isNew)
        self.oldCount = oldCount
        identityPrefix = source.indices.first { source[$0] != Int32($0) } ?? source.count
    }

    /// The identity on n indices (vocabulary rows, positions, the single row of a vector).
    static func identity(_ n: Int) -> AxisMap {
        AxisMap(source: (0..<n).map(Int32.init), count: [Float](repeating: 1, count: n),
                isNew: [Bool](repeating: false, count: n), oldCount: n)
    }

    /// Expands a unit map (new unit -> old unit, over `old` units) to units of `size` indices each:
    /// index u * size + k reads old index map[u] * size + k.
    convenience init(units map: [Int], old: Int, size: Int = 1) {
        var counts = [Int](repeating: 0, count: old)
        for j in map { counts[j] += 1 }
        var source: [Int32] = [], count: [Float] = [], isNew: [Bool] = []
        source.reserveCapacity(map.count * size)
        for (u, j) in map.enumerated() {
            for k in 0..<size {
                source.append(Int32(j * size + k))
                count.append(Float(counts[j]))
                isNew.append(u >= old)
            }
        }
        self.init(source: source, count: count, isNew: isNew, oldCount: old * size)
    }

    /// `parts` copies of this axis laid end to end (the q, k, v blocks of the fused projection).
    func repeated(_ parts: Int) -> AxisMap {
        let n = newCount
        return AxisMap(source: (0..<(parts * n)).map { source[$0 % n] + Int32($0 / n * oldCount) },
                       count: (0..<(parts * n)).map { count[$0 % n] },
                       isNew: (0..<(parts * n)).map { isNew[$0 % n] }, oldCount: parts * oldCount)
    }
}

/// The depth step of one growth event: which source layer each grown layer starts from.
public struct DepthMap: Codable, Equatable, Sendable {
    /// For each layer of the grown model, the layer of the source model it is a copy of.
    public var sources: [Int]
    /// For each layer of the grown model, whether it was inserted by this growth.
    public var inserted: [Bool]

    public init(sources: [Int], inserted: [Bool]) {
        self.sources = sources
        self.inserted = inserted
    }

    /// Every layer stays, none inserted.
    public static func identity(_ layers: Int) -> DepthMap {
        DepthMap(sources: Array(0..<layers), inserted: Array(repeating: false, count: layers))
    }

    /// G_stack: grown layer l starts as layer l mod L; the layers from L on are inserted.
    /// Returns the map and the grown model's lineage (each repeat keeps its source's origin).
    public static func stack(config c: ModelConfig, layers target: Int) -> (map: DepthMap, origins: [Int]) {
        let origins = c.layerOrigins ?? Array(0..<c.layers)
        let sources = (0..<target).map { $0 % c.layers }
        return (DepthMap(sources: sources, inserted: sources.indices.map { $0 >= c.layers }), sources.map { origins[$0] })
    }

    /// ELLE's rule, over the lineage in `config.layerOrigins` (block l is its own origin when nil):
    /// repeatedly pick, uniformly at random, an original layer among those copied least often so
    /// far, and insert a copy of it right after it. Every original is thus copied once before any
    /// is copied twice, across successive growth events too (6 -> 8 -> 10 -> 12 ends as six
    /// adjacent pairs). Returns the map and the grown model's lineage.
    public static func elle(config c: ModelConfig, layers target: Int, seed: UInt64) -> (map: DepthMap, origins: [Int]) {
        let origins = c.layerOrigins ?? Array(0..<c.layers)
        var entries = origins.enumerated().map { (source: $0.offset, origin: $0.element, inserted: false) }
        var copies: [Int: Int] = [:]
        for o in origins { copies[o, default: -1] += 1 }
        var rng = Xoshiro256(seed: SplitMix64.mix(seed, 1))
        while entries.count < target {
            let fewest = copies.values.min()!
            let candidates = copies.filter { $0.value == fewest }.keys.sorted()
            let origin = candidates[rng.nextInt(below: candidates.count)]
            let original = entries.firstIndex { $0.origin == origin }!
            entries.insert((entries[original].source, origin, true), at: original + 1)
            copies[origin]! += 1
        }
        return (DepthMap(sources: entries.map(\.source), inserted: entries.map(\.inserted)), entries.map(\.origin))
    }
}
