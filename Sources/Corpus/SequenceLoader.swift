import Tensors

/// Where a loader is in its data: enough to continue with exactly the next batch.
public struct LoaderPosition: Codable, Equatable, Sendable {
    public var epoch: Int
    /// Windows of the current epoch's order already consumed (by all ranks together).
    public var cursor: Int
    public init(epoch: Int = 0, cursor: Int = 0) {
        self.epoch = epoch
        self.cursor = cursor
    }
}

/// Draws training sequences from a token stream (in memory or memory-mapped shards): the stream
/// is cut into windows of T + 1 tokens (inputs and next-token targets) at stride T, each epoch
/// visits every window once in an order shuffled by (seed, epoch), and each global step gives
/// rank r of `worldSize` the B consecutive windows starting at cursor + r * B, so ranks never
/// share a window and all advance together.
public final class SequenceLoader {
    public let tokens: TokenStream
    public let seq: Int
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int
    public let windowCount: Int
    public private(set) var position: LoaderPosition
    private var order: [Int32] = []
    private var orderEpoch = -1

    public convenience init(tokens: Buffer<Int32>, seq: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1,
                            position: LoaderPosition = LoaderPosition()) throws {
        try self.init(stream: TokenStream(tokens), seq: seq, seed: seed, rank: rank, worldSize: worldSize, position: position)
    }

    public init(stream: TokenStream, seq: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1,
                position: LoaderPosition = LoaderPosition()) throws {
        self.tokens = stream
        self.seq = seq
        self.seed = seed
        self.rank = rank
        self.worldSize = worldSize
        self.position = position
        windowCount = stream.windowCount(seq: seq)
        if windowCount < 1 {
            throw DataError(path: "training data",
                            "has \(stream.count) tokens, fewer than one sequence of \(seq + 1)")
        }
    }

    /// Fills inputs and targets ((batch, T) each) with this rank's next batch and advances the
    /// shared cursor by worldSize * batch windows. `windows`, when given, receives the batch's
    /// window indices (the key of a per-window cache such as the KI teacher cache).
    public func next(batch b: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     windows: UnsafeMutablePointer<Int32>? = nil) {
        let perStep = b * worldSize
        precondition(perStep <= windowCount,
                     "a step needs \(perStep) sequences but the data has only \(windowCount)")
        if position.cursor + perStep > windowCount {
            position = LoaderPosition(epoch: position.epoch + 1, cursor: 0)
        }
        ensureOrder()
        for i in 0..<b {
            let window = Int(order[position.cursor + rank * b + i])
            windows?[i] = Int32(window)
            tokens.copyWindow(window, seq: seq, inputs: inputs + i * seq, targets: targets + i * seq)
        }
        position.cursor += perStep
    }

    /// The epoch's window order: Fisher-Yates from (seed, epoch), recomputed once per epoch.
    private func ensureOrder() {
        if orderEpoch == position.epoch { return }
        var rng = Xoshiro256(seed: SplitMix64.mix(seed, UInt64(position.epoch)))
        order = (0..<Int32(windowCount)).map { $0 }
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, rng.nextInt(below: i + 1))
        }
        orderEpoch = position.epoch
    }
}
