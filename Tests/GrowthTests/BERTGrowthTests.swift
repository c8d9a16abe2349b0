import Foundation
import Model
import Tensors
import TestSupport
import XCTest

/// Growth of BERT by its tensor roles (`BERTLayout.growthRoles`): which growths keep the
/// function, which cannot, and that carried moments follow the gradients. "Exact" = logits agree
/// to 1e-5 relative (TESTING.md), compared at every position (the head without targets).
///
/// Why the parts are exact or not, for a post-LN BERT:
/// - Every linear layer that reads the residual stream (the Q/K/V projection, the MLP input, the
///   head's dense layer) sees copied inputs through columns divided by their copy counts, so it
///   computes exactly what it did; heads and FFN units are copied with their output columns
///   divided the same way. This holds for any index map.
/// - Every LayerNorm (the embedding norm, the two post-norms of each block, the MLM-head norm)
///   normalizes over all H' coordinates. Its mean and variance are the old ones exactly when
///   every old coordinate is copied equally often (k-fold, round-robin); with a random map they
///   change, and so does everything after the first norm: only affine norms (the diagnostic)
///   make random maps exact.
/// - The tied projection reads the embedding undivided (it is also the input embedding), so
///   the division happens once, at the MLM-head norm (`outputNorm`); the output bias is per
///   vocabulary entry and is not grown.
/// - Depth: a post-LN block ends in a LayerNorm, so an inserted block cannot be the identity:
///   with its branch outputs zeroed it still computes LN2(LN1(x)) != x. Neither depth mode is
///   exact; the tests report the change each causes.
final class BERTGrowthTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    static let exact = 1e-5

    func allLogits(_ model: BERT) -> [Float] {
        model.forward(tokens: smallBERTTokens, targets: nil, batch: 3, seq: 8)
        return Array(UnsafeBufferPointer(start: model.logits, count: 3 * 8 * model.config.vocab))
    }

    func grow(_ model: BERT, _ plan: GrowthPlan) throws -> (BERT, GrowthResult) {
        let result = try Growth.grow(parameters: model.parameters, config: model.config, plan: plan)
        XCTAssertEqual(result.config.architecture, .bert)
        XCTAssertEqual(result.config.padToken, 1)
        return (try BERT(config: result.config, parameters: result.parameters), result)
    }

    func isUniform(_ map: [Int], old: Int) -> Bool {
        Set((0..<old).map { j in map.filter { $0 == j }.count }).count == 1
    }

    func testRolesCoverEveryTensor() throws {
        let model = try smallBERT()
        let roles = model.config.growthRoles()
        XCTAssertEqual(roles.count, model.tensors.count)
        let byName = Dictionary(uniqueKeysWithValues: zip(model.tensors.map(\.name), roles))
        XCTAssertEqual(byName["head.ln.weight"]?.role, .outputNorm)
        XCTAssertEqual(byName["head.ln.bias"]?.role, .outputNorm)
        XCTAssertEqual(byName["emb_ln.weight"]?.role, .norm)
        XCTAssertEqual(byName["head.dense.weight"]?.role, .weight(out: .residual, in: .residual))
        XCTAssertEqual(byName["head.bias"]?.role, .bias(.fixed))
        XCTAssertEqual(byName["blocks.1.ln2.bias"]?.role, .norm)
        XCTAssertEqual(byName["blocks.1.mlp.proj.weight"]?.writesResidualBranch, true)
        XCTAssertEqual(byName["blocks.1.mlp.fc.weight"]?.writesResidualBranch, false)
    }

    /// Affine norms, random (non-uniform) maps for the residual stream, heads and FFN: exact.
    /// The same growth with real LayerNorm is not (the norms' statistics change).
    func testAffineNormsRandomWidthGrowthIsExact() throws {
        let plan = GrowthPlan(layers: 2, width: 40, heads: 5, ffn: 150, source: .random, noise: 0, seed: 3)
        let small = try smallBERT(normalization: .affine)
        let (big, result) = try grow(small, plan)
        XCTAssertFalse(isUniform(result.width.residual, old: 16))
        let error = relative(allLogits(big), allLogits(small))
        print("BERT, affine norms, random maps 16 -> 40: logits relative error \(error)")
        XCTAssertLessThanOrEqual(error, Self.exact)

        let layerNormSmall = try smallBERT()
        let (layerNormBig, _) = try grow(layerNormSmall, plan)
        let inexact = relative(allLogits(layerNormBig), allLogits(layerNormSmall))
        print("BERT, LayerNorm, random maps 16 -> 40: logits relative change \(inexact) (not exact: LayerNorm statistics change)")
        XCTAssertGreaterThan(inexact, 1e-3, "real LayerNorm with random maps should change the function")
    }

    /// k-fold width (16 -> 32 and 48, heads 2 -> 4 and 6, FFN 64 -> 128 and 192) with round-robin
    /// maps: every LayerNorm keeps its statistics, so the whole model is exact with real
    /// LayerNorm, padding mask included. Without dividing the MLM-head norm (the tied division)
    /// it is not.
    func testKFoldRoundRobinWidthGrowthIsExactWithLayerNorm() throws {
        let small = try smallBERT()
        let reference = allLogits(small)
        for k in [2, 3] {
            let plan = GrowthPlan(layers: 2, width: 16 * k, heads: 2 * k, source: .roundRobin, noise: 0)
            let (big, result) = try grow(small, plan)
            XCTAssertEqual(big.config.ffn, 64 * k)
            XCTAssertEqual(result.width.residual, (0..<(16 * k)).map { $0 % 16 })
            let error = relative(allLogits(big), reference)
            print("BERT, LayerNorm, \(k)-fold round-robin: logits relative error \(error)")
            XCTAssertLessThanOrEqual(error, Self.exact)
            // The MLM-head norm carries the division: its gain is the source's / k.
            let gain = big.layout.tensor(named: "head.ln.weight")!, source = small.layout.tensor(named: "head.ln.weight")!
            XCTAssertEqual(big.parameters[gain.offset + 16], small.parameters[source.offset] / Float(k))
            XCTAssertEqual(big.parameters[big.layout.tensor(named: "emb_ln.weight")!.offset + 16],
                           small.parameters[small.layout.tensor(named: "emb_ln.weight")!.offset], "other norms are copied undivided")
            // Undo the division (the reference GPT code's bug): no longer the same function.
            for name in ["head.ln.weight", "head.ln.bias"] {
                for i in big.layout.tensor(named: name)!.range { big.parameters[i] *= Float(k) }
            }
            XCTAssertGreaterThan(relative(allLogits(big), reference), 0.5)
        }
    }

    /// Depth growth is never exact for post-LN BERT. Reports the change of each mode on the same
    /// model (relative logits change and mean KL per position): identity blocks (branch outputs
    /// zero) still renormalize twice, LN2(LN1(x)); ELLE's copies apply a block twice.
    func testDepthGrowthChangesThePostLNFunction() throws {
        let small = try smallBERT()
        let reference = allLogits(small)
        var changes: [GrowthPlan.DepthMode: (Double, Double)] = [:]
        for mode in [GrowthPlan.DepthMode.identity, .copy] {
            let (big, result) = try grow(small, GrowthPlan(layers: 3, width: 16, heads: 2, depthMode: mode, noise: 0, seed: 2))
            XCTAssertEqual(result.depth.inserted.filter { $0 }.count, 1)
            let grown = allLogits(big)
            let change = relative(grown, reference), kl = meanKL(reference, grown, vocab: 32)
            changes[mode] = (change, kl)
            print("BERT depth 2 -> 3, \(mode): logits relative change \(change), mean KL per position \(kl)")
            XCTAssertGreaterThan(change, 1e-3, "\(mode) depth growth cannot keep a post-LN function")
            if mode == .identity {
                let l = try XCTUnwrap(result.depth.inserted.firstIndex(of: true))
                for name in ["attn.proj.weight", "attn.proj.bias", "mlp.proj.weight", "mlp.proj.bias"] {
                    let spec = big.layout.tensor(named: "blocks.\(l).\(name)")!
                    XCTAssertTrue(spec.range.allSatisfy { big.parameters[$0] == 0 }, "blocks.\(l).\(name)")
                }
            }
        }
        // With affine norms whose gains are 1 and biases 0 in the inserted block, the identity
        // block would be exact: the change above comes from the norms alone.
        let affine = try smallBERT(normalization: .affine)
        let (deep, result) = try grow(affine, GrowthPlan(layers: 3, width: 16, heads: 2, depthMode: .identity, noise: 0, seed: 2))
        let l = try XCTUnwrap(result.depth.inserted.firstIndex(of: true))
        for norm in ["ln1", "ln2"] {
            for i in deep.layout.tensor(named: "blocks.\(l).\(norm).weight")!.range { deep.parameters[i] = 1 }
            for i in deep.layout.tensor(named: "blocks.\(l).\(norm).bias")!.range { deep.parameters[i] = 0 }
        }
        XCTAssertLessThanOrEqual(relative(allLogits(deep), allLogits(affine)), Self.exact)
    }

    /// With affine norms and no noise, the grown model's gradient of the masked-LM loss equals the
    /// source gradient mapped by the moment rule, per tensor to 1e-5: the roles' gradient factors
    /// (head dense rows divided, MLM-head norm undivided, output bias fixed) are right.
    func testCarriedMomentsFollowTheGradients() throws {
        let small = try smallBERT(normalization: .affine)
        let plan = GrowthPlan(layers: 2, width: 40, heads: 5, ffn: 150, source: .random, noise: 0, moments: .carry, seed: 3)
        var targets = [Int32](repeating: -1, count: smallBERTTokens.count)
        for (i, t) in [(0, 3), (5, 9), (9, 30), (13, 0), (17, 11), (20, 5)] { targets[i] = Int32(t) }
        func gradient(_ model: BERT) -> FloatBuffer {
            model.zeroGradients()
            model.forward(tokens: smallBERTTokens, targets: targets, batch: 3, seq: 8)
            model.backward()
            let g = FloatBuffer(count: model.parameterCount)
            g.copy(from: model.gradients)
            return g
        }
        let g = gradient(small)
        let squared = FloatBuffer((0..<g.count).map { g[$0] * g[$0] })
        let result = try Growth.grow(parameters: small.parameters, config: small.config, plan: plan, moments: (g, squared))
        let big = try BERT(config: result.config, parameters: result.parameters)
        let bigGradient = gradient(big)
        let mapped = try Growth.mapGradients(g, config: small.config, maps: result.width, power: 1)
        let carried = try XCTUnwrap(result.moments)
        defer { withExtendedLifetime((mapped, carried.m, carried.v, bigGradient)) {} }
        var worst = 0.0
        for spec in big.layout.tensors {
            let reference = Array(UnsafeBufferPointer(start: bigGradient.pointer + spec.offset, count: spec.count))
            let error = maxRelativeError(mapped.pointer + spec.offset, reference)
            worst = max(worst, error)
            XCTAssertLessThanOrEqual(error, Self.exact, "gradient of \(spec.name)")
            XCTAssertLessThanOrEqual(maxRelativeError(carried.m.pointer + spec.offset, reference), Self.exact, "adam.m of \(spec.name)")
            // The second moment follows the squared gradient (a relative error doubles when squared).
            let square = reference.map { $0 * $0 }
            XCTAssertLessThanOrEqual(maxRelativeError(carried.v.pointer + spec.offset, square), 2 * Self.exact, "adam.v of \(spec.name)")
        }
        print("BERT carried moments: worst per-tensor gradient relative error \(worst)")
    }
}
