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
/// visits every window once in an order shuffled by (seed, epoch), and the data is read as one
/// sequence of batches of B windows. An update's batches are numbered globally: the trainer
/// gives global micro-batch g its batch g (`fill`), so ranks never share a window, all advance
/// together (`advance`), and what each micro-batch reads does not depend on the rank count.
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

    /// Fills inputs and targets ((batch, T) each) with this rank's next batch (batch `rank` of
    /// the `worldSize` batches all ranks take together) and advances past all of them. `windows`,
    /// when given, receives the batch's window indices (the key of a per-window cache such as the
    /// KI teacher cache).
    public func next(batch b: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     windows: UnsafeMutablePointer<Int32>? = nil) {
        fill(batch: rank, size: b, inputs: inputs, targets: targets, windows: windows)
        advance(batches: worldSize, size: b)
    }

    /// Fills inputs and targets with batch `k` (0-based) after the current position, without
    /// moving: the data is one sequence of batches of `b` windows, each taking the next `b`
    /// windows of its epoch's order, a new epoch starting when fewer than `b` are left. An update
    /// numbers its batches globally (every rank reads its own), so what a batch holds does not
    /// depend on how many ranks share the update.
    public func fill(batch k: Int, size b: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     windows: UnsafeMutablePointer<Int32>? = nil) {
        let perEpoch = batchesPerEpoch(b)
        let index = position.cursor / b + k
        ensureOrder(epoch: position.epoch + index / perEpoch)
        let first = (index % perEpoch) * b
        for i in 0..<b {
            let window = Int(order[first + i])
            windows?[i] = Int32(window)
            tokens.copyWindow(window, seq: seq, inputs: inputs + i * seq, targets: targets + i * seq)
        }
    }

    /// Moves past `batches` batches of `b` windows (what an update consumed on all ranks).
    public func advance(batches: Int, size b: Int) {
        guard batches > 0 else { return }
        let perEpoch = batchesPerEpoch(b)
        // The batch index after the last one read; an epoch's end is kept as (epoch, its last
        // cursor) so that positions read the same as they did when the wrap came on the next read.
        let end = position.cursor / b + batches
        position = LoaderPosition(epoch: position.epoch + (end - 1) / perEpoch, cursor: ((end - 1) % perEpoch + 1) * b)
    }

    private func batchesPerEpoch(_ b: Int) -> Int {
        precondition(b >= 1 && b <= windowCount, "a batch of \(b) sequences but the data has only \(windowCount)")
        precondition(position.cursor % b == 0, "loader cursor \(position.cursor) is not a multiple of the batch \(b)")
        return windowCount / b
    }

    /// An epoch's window order: Fisher-Yates from (seed, epoch), recomputed when the epoch changes.
    private func ensureOrder(epoch: Int) {
        if orderEpoch == epoch { return }
        var rng = Xoshiro256(seed: SplitMix64.mix(seed, UInt64(epoch)))
        order = (0..<Int32(windowCount)).map { $0 }
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, rng.nextInt(below: i + 1))
        }
        orderEpoch = epoch
    }
}
