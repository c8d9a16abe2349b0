import Model
import TestSupport
import Tensors
import Training
import XCTest

/// The pieces ZeRO-1 is made of, on one process: the shard layout, the norm from per-block
/// partial sums, and AdamW over shards against the whole-buffer update.
final class ZeroShardingTests: XCTestCase {
    func uniform(_ rng: inout SplitMix64) -> Float { Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1 }

    func testLayoutCoversTheBufferInBlockAlignedShards() {
        for (count, ranks) in [(0, 2), (5, 3), (3 * reductionBlock + 7, 2), (3 * reductionBlock + 7, 4), (10 * reductionBlock, 3)] {
            let layout = ShardLayout(count: count, ranks: ranks)
            var next = 0
            for rank in 0..<ranks {
                let range = layout.range(of: rank)
                XCTAssertEqual(range.lowerBound, next, "\(count) over \(ranks)")
                if range.upperBound < count { XCTAssertEqual(range.upperBound % reductionBlock, 0) }
                next = range.upperBound
            }
            XCTAssertEqual(next, count)
            // Pieces of any range follow the owners and put the range back together.
            let probe = (count / 3)..<(count - count / 5)
            let pieces = layout.pieces(of: probe)
            XCTAssertEqual(pieces.first?.range.lowerBound ?? probe.upperBound, probe.lowerBound)
            for (a, b) in zip(pieces, pieces.dropFirst()) { XCTAssertEqual(a.range.upperBound, b.range.lowerBound) }
            for piece in pieces {
                XCTAssertTrue(layout.range(of: piece.owner).contains(piece.range.lowerBound))
                XCTAssertTrue(layout.range(of: piece.owner).contains(piece.range.upperBound - 1))
            }
        }
        // 4 ranks, 3 blocks and a bit: the last rank owns nothing and its norm blocks are none.
        let small = ShardLayout(count: 2 * reductionBlock + 100, ranks: 4)
        XCTAssertTrue(small.range(of: 3).isEmpty)
        XCTAssertEqual(small.blocks(of: 3), 0..<0)
        XCTAssertEqual(small.blocks(of: 2), 2..<3)
    }

    /// The sum of every shard's block partials in block order has `sumOfSquares`'s bits.
    func testBlockPartialsAddUpToSumOfSquaresBitForBit() {
        let count = 5 * reductionBlock + 123
        let x = FloatBuffer(count: count)
        var rng = SplitMix64(seed: 7)
        for i in 0..<count { x[i] = uniform(&rng) * (i % 97 == 0 ? 30 : 1) }
        for ranks in [1, 2, 3, 4] {
            let layout = ShardLayout(count: count, ranks: ranks)
            var partial = [Double](repeating: 0, count: 6)
            for rank in 0..<ranks {
                var mine = [Double](repeating: 0, count: 6)
                mine.withUnsafeMutableBufferPointer { blockSumsOfSquares(x.pointer, count: count, blocks: layout.blocks(of: rank), into: $0.baseAddress!) }
                for b in 0..<6 { partial[b] += mine[b] }  // one non-zero term per block: exact
            }
            XCTAssertEqual(partial.reduce(0, +).bitPattern, sumOfSquares(x.pointer, count: count).bitPattern, "\(ranks) ranks")
        }
    }

    /// Each shard's optimizer gives its parameters and moments the bits the whole-buffer update
    /// gives them, over several steps, with decayed and undecayed tensors cut by the shards.
    func testShardedAdamWMatchesTheWholeBufferUpdate() throws {
        let model = try GPT(config: ModelConfig(architecture: .gpt, layers: 2, width: 64, heads: 2, vocab: 300, context: 16), seed: 1)
        let count = model.parameterCount
        XCTAssertGreaterThan(count, 2 * reductionBlock)
        let settings = AdamWSettings()
        let whole = AdamW(tensors: model.tensors, count: count, settings: settings)
        let wholeParameters = FloatBuffer(count: count)
        wholeParameters.copy(from: model.parameters)
        let layout = ShardLayout(count: count, ranks: 3)
        let shards = (0..<3).map { AdamW(tensors: model.tensors, count: count, settings: settings, shard: layout.range(of: $0)) }
        let shardedParameters = FloatBuffer(count: count)
        shardedParameters.copy(from: model.parameters)
        let gradient = FloatBuffer(count: count)
        var rng = SplitMix64(seed: 3)
        for _ in 0..<3 {
            for i in 0..<count { gradient[i] = uniform(&rng) * 0.1 }
            whole.update(parameters: wholeParameters, gradients: gradient, learningRate: 1e-3)
            for shard in shards { shard.update(parameters: shardedParameters, gradients: gradient, learningRate: 1e-3) }
        }
        XCTAssertTrue(bitIdentical(wholeParameters.pointer, shardedParameters.pointer, count))
        for (rank, shard) in shards.enumerated() {
            let range = layout.range(of: rank)
            XCTAssertEqual(shard.m.count, range.count)
            XCTAssertTrue(bitIdentical(whole.m.pointer + range.lowerBound, shard.m.pointer, range.count))
            XCTAssertTrue(bitIdentical(whole.v.pointer + range.lowerBound, shard.v.pointer, range.count))
        }
    }
}
