import Foundation
import Model
import Tensors
import TestSupport
import XCTest

/// Which growths preserve the function, which do not, and that the carried moments follow the
/// gradients. "Exact" = logits agree to 1e-5 relative (TESTING.md).
final class GrowthExactnessTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    static let exact = 1e-5

    /// 2 layers, width 16, 2 heads of 8, FFN 64, vocab 32, sequence 8; weights large enough that
    /// every path matters.
    func smallModel(normalization: Normalization = .layerNorm, seed: UInt64 = 11) throws -> GPT {
        var config = Tiny.config()
        config.normalization = normalization
        let model = try GPT(config: config, seed: seed)
        fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: seed + 1)
        return model
    }

    let tokens = randomTokens(3 * 8, vocab: 32, seed: 4)

    func grow(_ model: GPT, _ plan: GrowthPlan) throws -> (GPT, GrowthResult) {
        let result = try Growth.grow(parameters: model.parameters, config: model.config, plan: plan)
        return (try grownModel(result), result)
    }

    /// Every old unit is copied the same number of times?
    func isUniform(_ map: [Int], old: Int) -> Bool {
        Set((0..<old).map { j in map.filter { $0 == j }.count }).count == 1
    }

    /// With affine norms, random (non-uniform) maps for residual, heads and FFN are exact; the same
    /// growth with real LayerNorm is not (which is what the test would catch if a rule were wrong
    /// in a way LayerNorm's statistics happened to hide).
    func testAffineNormsRandomWidthGrowthIsExact() throws {
        let plan = GrowthPlan(layers: 2, width: 40, heads: 5, ffn: 150, source: .random, noise: 0, seed: 3)
        let small = try smallModel(normalization: .affine)
        let (big, result) = try grow(small, plan)
        XCTAssertEqual(big.config.width, 40)
        XCTAssertEqual(big.config.heads, 5)
        XCTAssertEqual(big.config.headDim, 8)
        XCTAssertEqual(big.config.ffn, 150)
        XCTAssertFalse(isUniform(result.width.residual, old: 16), "the residual map should be non-uniform")
        XCTAssertFalse(isUniform(result.width.heads[0], old: 2) && isUniform(result.width.heads[1], old: 2))
        let error = relative(logits(big, tokens, batch: 3, seq: 8), logits(small, tokens, batch: 3, seq: 8))
        print("affine norms, random maps 16 -> 40: logits relative error \(error)")
        XCTAssertLessThanOrEqual(error, Self.exact)

        let layerNormSmall = try smallModel()
        let (layerNormBig, _) = try grow(layerNormSmall, plan)
        let inexact = relative(logits(layerNormBig, tokens, batch: 3, seq: 8), logits(layerNormSmall, tokens, batch: 3, seq: 8))
        XCTAssertGreaterThan(inexact, 1e-3, "real LayerNorm with random maps should change the function")
    }

    /// k-fold width (16 -> 32, 2 -> 4 heads, FFN 64 -> 128) with round-robin maps keeps LayerNorm's
    /// mean and variance, so it is exact with real LayerNorm.
    func testKFoldRoundRobinWidthGrowthIsExactWithLayerNorm() throws {
        let small = try smallModel()
        for k in [2, 3] {
            let plan = GrowthPlan(layers: 2, width: 16 * k, heads: 2 * k, source: .roundRobin, noise: 0)
            let (big, result) = try grow(small, plan)
            XCTAssertEqual(big.config.ffn, 64 * k)
            XCTAssertEqual(result.width.residual, (0..<(16 * k)).map { $0 % 16 })
            let error = relative(logits(big, tokens, batch: 3, seq: 8), logits(small, tokens, batch: 3, seq: 8))
            print("LayerNorm, \(k)-fold round-robin: logits relative error \(error)")
            XCTAssertLessThanOrEqual(error, Self.exact)
        }
    }

    /// Identity blocks (zero attention and MLP outputs) are exact in pre-LN GPT, alone and together
    /// with a k-fold width growth; ELLE's copied layers change the function.
    func testIdentityDepthGrowthIsExactAndCopyDepthGrowthIsNot() throws {
        let small = try smallModel()
        let reference = logits(small, tokens, batch: 3, seq: 8)
        for (layers, width, heads) in [(5, 16, 2), (4, 32, 4)] {
            let plan = GrowthPlan(layers: layers, width: width, heads: heads, depthMode: .identity,
                                  source: .roundRobin, noise: 0.01, seed: 9)
            let (big, result) = try grow(small, plan)
            // Noise went into the new width units only where it cannot reach an identity block.
            let error = relative(logits(big, tokens, batch: 3, seq: 8), reference)
            if width == 16 {
                print("identity depth 2 -> \(layers): logits relative error \(error)")
                XCTAssertLessThanOrEqual(error, Self.exact)
            }
            XCTAssertEqual(result.depth.inserted.filter { $0 }.count, layers - 2)
            for (l, inserted) in result.depth.inserted.enumerated() where inserted {
                for name in ["attn.proj.weight", "attn.proj.bias", "mlp.proj.weight", "mlp.proj.bias"] {
                    XCTAssertTrue(values(big, "blocks.\(l).\(name)").allSatisfy { $0 == 0 }, "blocks.\(l).\(name)")
                }
                XCTAssertEqual(values(big, "blocks.\(l).ln1.weight").prefix(16), values(big, "blocks.\(l - 1).ln1.weight").prefix(16),
                               "an identity block starts from its original's other weights")
            }
        }
        let exactPlan = GrowthPlan(layers: 4, width: 32, heads: 4, depthMode: .identity, source: .roundRobin, noise: 0)
        let (exactBig, _) = try grow(small, exactPlan)
        let combined = relative(logits(exactBig, tokens, batch: 3, seq: 8), reference)
        print("identity depth 2 -> 4 with 2-fold width: logits relative error \(combined)")
        XCTAssertLessThanOrEqual(combined, Self.exact)

        let (copied, copyResult) = try grow(small, GrowthPlan(layers: 3, width: 16, heads: 2, depthMode: .copy, noise: 0))
        XCTAssertEqual(copyResult.depth.inserted.filter { $0 }.count, 1)
        let change = relative(logits(copied, tokens, batch: 3, seq: 8), reference)
        print("copy depth 2 -> 3: logits relative change \(change)")
        XCTAssertGreaterThan(change, 1e-3, "a copied layer applies its block twice and must change the function")
    }

    /// With affine norms and no noise the grown model's gradient equals the source gradient mapped
    /// by the moment rule (divided by the copy count of what each tensor writes), to 1e-5 per
    /// tensor; carried Adam moments built from that gradient are the grown gradient and its square.
    func testCarriedMomentsFollowTheGradients() throws {
        let small = try smallModel(normalization: .affine)
        let plan = GrowthPlan(layers: 2, width: 40, heads: 5, ffn: 150, source: .random, noise: 0, moments: .carry, seed: 3)
        let targets = randomTokens(tokens.count, vocab: 32, seed: 5)
        func gradient(_ model: GPT) -> FloatBuffer {
            model.zeroGradients()
            model.forward(tokens: tokens, targets: targets, batch: 3, seq: 8)
            model.backward()
            let g = FloatBuffer(count: model.parameterCount)
            g.copy(from: model.gradients)
            return g
        }
        let g = gradient(small)
        let squared = FloatBuffer((0..<g.count).map { g[$0] * g[$0] })
        let result = try Growth.grow(parameters: small.parameters, config: small.config, plan: plan, moments: (g, squared))
        let big = try grownModel(result)
        let bigGradient = gradient(big)
        let mapped = try Growth.mapGradients(g, config: small.config, maps: result.width, power: 1)
        let carried = try XCTUnwrap(result.moments)
        let copied = try Growth.mapGradients(g, config: small.config, maps: result.width, power: 0)
        defer { withExtendedLifetime((mapped, carried.m, carried.v, bigGradient, copied)) {} }
        var worst = 0.0
        for spec in big.layout.tensors {
            let reference = Array(UnsafeBufferPointer(start: bigGradient.pointer + spec.offset, count: spec.count))
            let error = maxRelativeError(mapped.pointer + spec.offset, reference)
            worst = max(worst, error)
            XCTAssertLessThanOrEqual(error, Self.exact, "gradient of \(spec.name)")
            XCTAssertLessThanOrEqual(maxRelativeError(carried.m.pointer + spec.offset, reference), Self.exact, "adam.m of \(spec.name)")
            let square = reference.map { $0 * $0 }
            XCTAssertLessThanOrEqual(maxRelativeError(carried.v.pointer + spec.offset, square), 2 * Self.exact, "adam.v of \(spec.name)")
        }
        print("carried moments: worst per-tensor gradient relative error \(worst)")
        // The rule is not trivial: the grown gradient is not the plain copy of the source one.
        let wte = big.layout.tensor(named: "wte")!
        XCTAssertGreaterThan(maxRelativeError(copied.pointer + wte.offset,
                                              Array(UnsafeBufferPointer(start: bigGradient.pointer + wte.offset, count: wte.count))), 0.1)
    }

    /// Noise: `copies` touches exactly the entries of new units, with the requested spread; `all`
    /// touches everything; both are the same bits with 1 and 2 threads.
    func testNoiseScopeAndThreadIndependence() throws {
        let small = try smallModel()
        let maps = WidthMaps.draw(from: small.config, to: GrowthPlan(layers: 2, width: 48, heads: 6).target(source: small.config),
                                  choice: .random, seed: 4)
        let (clean, config) = try Growth.widen(small.parameters, config: small.config, maps: maps)
        let layout = GPTLayout(config: config)
        func noisy(_ scope: GrowthPlan.NoiseScope, threads: Int) throws -> FloatBuffer {
            Parallel.configure(threads: threads)
            defer { Parallel.configure(threads: 2) }
            let (p, _) = try Growth.widen(small.parameters, config: small.config, maps: maps)
            try Growth.addNoise(p, config: small.config, maps: maps, std: 0.05, scope: scope, seed: 8)
            return p
        }
        let copies = try noisy(.copies, threads: 2), copiesOneThread = try noisy(.copies, threads: 1)
        let all = try noisy(.all, threads: 2), allOneThread = try noisy(.all, threads: 1)
        withExtendedLifetime([copies, copiesOneThread, all, allOneThread]) {
            XCTAssertTrue(bitIdentical(copies.pointer, copiesOneThread.pointer, copies.count))
            XCTAssertTrue(bitIdentical(all.pointer, allOneThread.pointer, all.count))
        }

        // wte [V, 48]: columns >= 16 are new; qkv rows of heads >= 2 are new.
        let wte = layout.tensor(named: "wte")!
        var deltas: [Double] = []
        for v in 0..<config.vocab {
            for i in 0..<48 {
                let k = wte.offset + v * 48 + i
                if i < 16 { XCTAssertEqual(copies[k], clean[k]) } else { deltas.append(Double(copies[k] - clean[k])) }
            }
        }
        let std = (deltas.map { $0 * $0 }.reduce(0, +) / Double(deltas.count)).squareRoot()
        XCTAssertEqual(std, 0.05, accuracy: 0.005)
        XCTAssertEqual(deltas.reduce(0, +) / Double(deltas.count), 0, accuracy: 0.005)
        let withinOneStd = Double(deltas.filter { abs($0) < 0.05 }.count) / Double(deltas.count)
        XCTAssertEqual(withinOneStd, 0.6827, accuracy: 0.05, "the noise should be Gaussian")
        let qkv = layout.tensor(named: "blocks.1.attn.qkv.weight")!
        for r in 0..<(3 * 48) {
            let head = (r % 48) / 8
            let row = (0..<48).map { copies[qkv.offset + r * 48 + $0] - clean[qkv.offset + r * 48 + $0] }
            if head >= 2 { XCTAssertTrue(row.allSatisfy { $0 != 0 }, "row \(r) of a new head") }
            else { XCTAssertEqual(row.prefix(16).filter { $0 != 0 }.count, 0, "old columns of old row \(r)") }
        }
        // Scope all with std 1 on zeros: every entry is a standard normal draw.
        let zeros = FloatBuffer(count: config.parameterCount)
        try Growth.addNoise(zeros, config: small.config, maps: maps, std: 1, scope: .all, seed: 3)
        let draws = (0..<zeros.count).map { Double(zeros[$0]) }
        let n = Double(draws.count)
        let mean = draws.reduce(0, +) / n
        let variance = draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n
        let kurtosis = draws.map { pow($0 - mean, 4) }.reduce(0, +) / n / (variance * variance)
        let beyondTwo = Double(draws.filter { abs($0) > 2 }.count) / n
        print("noise draws: n \(draws.count), mean \(mean), variance \(variance), kurtosis \(kurtosis), P(|z| > 2) \(beyondTwo)")
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
        XCTAssertEqual(kurtosis, 3, accuracy: 0.1)
        XCTAssertEqual(beyondTwo, 0.0455, accuracy: 0.004)

        let lnf = layout.tensor(named: "lnf.weight")!
        XCTAssertNotEqual(all[lnf.offset], clean[lnf.offset], "scope all perturbs old units too")
        XCTAssertEqual(copies[lnf.offset], clean[lnf.offset])
    }
}
