import Communication
import Foundation
import Model
import Tensors

/// ZeRO stage 1 (`--zero 1`, docs/SCALING.md "ZeRO-1"): each rank keeps Adam's moments for one
/// contiguous shard of the flat parameter buffer and updates only those parameters.
///
/// Per update: backward's gradient buckets are cut at shard boundaries and each piece is summed
/// onto its owner (`Communicator.startTreeReduce`, the pairwise tree over rank order that the
/// all-reduce of plain data parallelism uses, so the owner's sums have the same bits); the
/// clipping norm is the fixed-order sum of every rank's per-block partial sums; each rank updates
/// its shard; every shard is broadcast from its owner (the all-gather). So a ZeRO-1 run has the
/// same bits as plain data parallelism on the same ranks. Memory per rank: the full parameters and
/// gradient (4 + 4 bytes per parameter) and 8 / N bytes of moments instead of 8.
///
/// Shards are whole blocks of `reductionBlock` floats (the last one shorter, possibly empty), so
/// a rank's part of the norm is whole blocks of `sumOfSquares`.
public struct ShardLayout: Equatable, Sendable {
    public let count: Int
    public let ranks: Int

    public init(count: Int, ranks: Int) {
        precondition(ranks >= 1 && count >= 0)
        self.count = count
        self.ranks = ranks
    }

    /// Floats per shard (the last may hold fewer).
    public var shardSize: Int {
        let blocks = (count + reductionBlock - 1) / reductionBlock
        return max(1, (blocks + ranks - 1) / ranks) * reductionBlock
    }

    public func range(of rank: Int) -> Range<Int> {
        let lower = min(count, rank * shardSize)
        return lower..<min(count, lower + shardSize)
    }

    /// `range` cut at shard boundaries, each piece with its owner, in ascending order.
    public func pieces(of range: Range<Int>) -> [(owner: Int, range: Range<Int>)] {
        var pieces: [(owner: Int, range: Range<Int>)] = []
        var lower = range.lowerBound
        while lower < range.upperBound {
            let owner = lower / shardSize
            let upper = min(range.upperBound, (owner + 1) * shardSize)
            pieces.append((owner, lower..<upper))
            lower = upper
        }
        return pieces
    }

    /// Largest point-to-point message of ZeRO-1's exchanges (2 MiB of floats).
    public static let messageElements = 1 << 19

    /// `pieces` cut into messages of at most `messageElements`, taken round-robin over the
    /// pieces (first message of each, then the second...), so that transfers to and from
    /// different owners alternate on the wire.
    public func interleavedMessages(of pieces: [(owner: Int, range: Range<Int>)]) -> [(owner: Int, range: Range<Int>)] {
        let cut = pieces.map { piece in
            stride(from: piece.range.lowerBound, to: piece.range.upperBound, by: ShardLayout.messageElements).map {
                (owner: piece.owner, range: $0..<min(piece.range.upperBound, $0 + ShardLayout.messageElements))
            }
        }
        var out: [(owner: Int, range: Range<Int>)] = []
        for k in 0..<(cut.map(\.count).max() ?? 0) {
            for messages in cut where k < messages.count { out.append(messages[k]) }
        }
        return out
    }

    /// The blocks of `sumOfSquares` the shard of `rank` covers.
    public func blocks(of rank: Int) -> Range<Int> {
        let r = range(of: rank)
        if r.isEmpty { return 0..<0 }
        return (r.lowerBound / reductionBlock)..<((r.upperBound + reductionBlock - 1) / reductionBlock)
    }
}

extension Trainer {
    /// The run's optimizer shards (nil without ZeRO), for the model as it is now.
    public var shards: ShardLayout? {
        options.zero == 1 ? ShardLayout(count: model.parameterCount, ranks: communicator.size) : nil
    }

    /// The parameters this rank's optimizer updates.
    var ownedRange: Range<Int> { shards?.range(of: communicator.rank) ?? 0..<model.parameterCount }

    /// An optimizer for the current model: over this rank's shard under ZeRO, with fresh moments.
    func freshOptimizer() -> AdamW {
        AdamW(tensors: model.tensors, count: model.parameterCount, settings: options.adam, shard: shards?.range(of: communicator.rank))
    }

    /// The global L2 norm of the summed gradient, each rank contributing the blocks of its shard
    /// (all-reduced as a vector with one non-zero term per entry, so exact) and the blocks added
    /// in order: `sumOfSquares`'s bits. Then clips this rank's shard as `clipGradients` does.
    /// Collective.
    func clipShardedGradients(_ gradients: FloatBuffer, layout: ShardLayout) throws -> Float {
        let blocks = (gradients.count + reductionBlock - 1) / reductionBlock
        let partial = Buffer<Double>(count: blocks)
        partial.zero()
        blockSumsOfSquares(gradients.pointer, count: gradients.count, blocks: layout.blocks(of: communicator.rank), into: partial.pointer)
        if communicator.size > 1 { try communicator.allReduce(partial, .sum, label: "gradient-norm partial sums of update \(step + 1)") }
        var total = 0.0
        for b in 0..<blocks { total += partial[b] }
        let norm = Float(total.squareRoot())
        if let maxNorm = options.clip, norm > maxNorm, norm.isFinite {
            let owned = layout.range(of: communicator.rank)
            scaleInPlace(gradients.pointer + owned.lowerBound, maxNorm / norm, count: owned.count)
        }
        return norm
    }

    /// Every rank's shard of `buffer` sent by its owner to every rank: ZeRO-1's all-gather. The
    /// shards go in messages of at most `ShardLayout.messageElements`, the owners' messages
    /// interleaved, all started at once. Owner by owner (all of rank 0's shard, then rank 1's),
    /// 2 ranks at 1 Gbit/s took 540 ms for the 34 MB each way of 6/384, one direction after the
    /// other most of the time; interleaved, 285-300 ms (280 for the bytes); a window of 1-4
    /// rounds in flight, 340-500 ms. Collective.
    @discardableResult
    func allGatherShards(_ buffer: UnsafeMutablePointer<Float>, layout: ShardLayout, what: String) throws -> [CollectiveRecord] {
        let (messages, records) = try startAllGather(buffer, layout: layout, what: what)
        for message in messages { try message.collective.wait() }
        return records
    }

    /// Starts `allGatherShards`'s messages and returns them in start order.
    func startAllGather(_ buffer: UnsafeMutablePointer<Float>, layout: ShardLayout, what: String) throws
        -> (messages: [ShardArrivals.Message], records: [CollectiveRecord]) {
        guard communicator.size > 1 else { return ([], []) }
        var messages: [ShardArrivals.Message] = []
        var records: [CollectiveRecord] = []
        for (owner, range) in layout.interleavedMessages(of: (0..<layout.ranks).map { (owner: $0, range: layout.range(of: $0)) }) {
            let collective = try communicator.startDirectBroadcast(buffer + range.lowerBound, count: range.count, root: owner,
                                                                   label: "\(what) (elements \(range.lowerBound)..<\(range.upperBound) from rank \(owner))")
            collective.progressInBackground()
            messages.append((range, collective))
            records.append(CollectiveRecord(kind: .broadcast, count: range.count, root: owner))
        }
        return (messages, records)
    }

    /// Adam's moments over every parameter on every rank (gathered from the shards under ZeRO;
    /// the optimizer's own buffers otherwise): for growth and for whole-model checkpoints.
    /// Collective.
    func fullMoments() throws -> (m: FloatBuffer, v: FloatBuffer) {
        guard let layout = shards else { return (optimizer.m, optimizer.v) }
        let owned = layout.range(of: communicator.rank)
        let m = FloatBuffer(count: layout.count), v = FloatBuffer(count: layout.count)
        m.pointer.advanced(by: owned.lowerBound).update(from: optimizer.m.pointer, count: owned.count)
        v.pointer.advanced(by: owned.lowerBound).update(from: optimizer.v.pointer, count: owned.count)
        try allGatherShards(m.pointer, layout: layout, what: "Adam first-moment gather after update \(step)")
        try allGatherShards(v.pointer, layout: layout, what: "Adam second-moment gather after update \(step)")
        return (m, v)
    }

    /// Installs moments over every parameter, as rank 0 holds them (broadcast to the others):
    /// each rank keeps its shard. Collective.
    func installMoments(_ full: (m: FloatBuffer, v: FloatBuffer)) throws {
        if communicator.size > 1 {
            try communicator.broadcast(full.m, label: "Adam first-moment broadcast from rank 0")
            try communicator.broadcast(full.v, label: "Adam second-moment broadcast from rank 0")
        }
        optimizer.copyMoments(from: full, covering: 0..<model.parameterCount)
    }

    // MARK: sharded checkpoints

    /// The file holding shard `rank` of `ranks` of the moments of checkpoint `path`.
    public static func momentShardPath(_ path: String, rank: Int, of ranks: Int) -> String {
        "\(path).adam-\(rank)-of-\(ranks)"
    }

    /// Under ZeRO, every rank writes its moment shard next to checkpoint `name` of `folder`
    /// (atomically, `Checkpoint` format with tensors "adam.m" and "adam.v" of the shard's size),
    /// and all ranks agree that every shard is on disk before rank 0 writes the checkpoint that
    /// refers to them. No effect without ZeRO. Collective.
    public func writeMomentShards(in folder: RunFolder, name: String) throws {
        guard let layout = shards else { return }
        var failure: String?
        do {
            try FileManager.default.createDirectory(atPath: folder.path, withIntermediateDirectories: true)
            let path = Trainer.momentShardPath(folder.file(name), rank: communicator.rank, of: layout.ranks)
            var state = state(loaders: [])
            state.momentShards = layout.ranks
            try Checkpoint(config: model.config, state: state, tensors: [("adam.m", optimizer.m), ("adam.v", optimizer.v)]).write(to: path)
        } catch {
            failure = "\(error)"
            FileHandle.standardError.write(Data("elle: rank \(communicator.rank): cannot write its Adam shard: \(error)\n".utf8))
        }
        let failed = try communicator.allGather(Int64(failure == nil ? 0 : 1), label: "moment shard writes of update \(step)")
        let ranks = failed.indices.filter { failed[$0] != 0 }
        if !ranks.isEmpty {
            throw JobError("the Adam shards of checkpoint \(name) could not be written on rank(s) \(ranks.map(String.init).joined(separator: ", ")) (their messages above); the checkpoint was not written")
        }
    }

    /// Loads the moments of a sharded checkpoint (`path` as rank 0 sees it) into this run's
    /// optimizer, on any number of ranks with or without ZeRO: rank 0 reads the shard files one at
    /// a time and broadcasts each; every rank keeps what its own shard covers. A missing, corrupt
    /// or mismatched shard file ends every rank with an error naming it. No effect for a checkpoint
    /// that holds its moments itself. Collective.
    public func loadMomentShards(of checkpoint: Checkpoint, path: String) throws {
        guard let writers = checkpoint.state.momentShards else { return }
        let saved = ShardLayout(count: model.parameterCount, ranks: writers)
        for source in 0..<writers {
            let count = saved.range(of: source).count
            var shard: (m: FloatBuffer, v: FloatBuffer)?
            var failure = ""
            if communicator.isRoot {
                do { shard = try checkpoint.momentShard(source, path: path) } catch { failure = "\(error)" }
            }
            failure = try communicator.broadcast(failure, label: "Adam shard \(source) check from rank 0")
            if !failure.isEmpty { throw JobError(communicator.size > 1 ? "rank 0: \(failure)" : failure) }
            let received = shard ?? (FloatBuffer(count: count), FloatBuffer(count: count))
            if communicator.size > 1 {
                try communicator.broadcast(received.m, label: "Adam first-moment shard \(source) from rank 0")
                try communicator.broadcast(received.v, label: "Adam second-moment shard \(source) from rank 0")
            }
            optimizer.copyMoments(from: received, covering: saved.range(of: source))
        }
    }
}

extension Checkpoint {
    /// Moment shard `rank` of this sharded checkpoint (read from `path`'s shard file, verified as
    /// any checkpoint, and checked to hold that shard of this very update).
    func momentShard(_ rank: Int, path: String) throws -> (m: FloatBuffer, v: FloatBuffer) {
        let writers = state.momentShards ?? 0
        let file = Trainer.momentShardPath(path, rank: rank, of: writers)
        let count = ShardLayout(count: config.parameterCount, ranks: writers).range(of: rank).count
        let read = try Checkpoint.read(from: file)
        guard let m = read.tensor("adam.m"), let v = read.tensor("adam.v"), m.count == count, v.count == count else {
            throw CheckpointError(path: file, "does not hold Adam shard \(rank) of \(writers) (\(count) values of adam.m and adam.v)")
        }
        guard read.state.step == state.step, read.state.momentShards == writers else {
            throw CheckpointError(path: file, "belongs to update \(read.state.step) of a \(read.state.momentShards ?? 0)-shard run, not to update \(state.step) of \(writers)")
        }
        return (m, v)
    }

    /// This checkpoint with its moments in the file itself: a sharded one's shard files
    /// (`Trainer.momentShardPath`, beside `path`) read, verified and put together; any other
    /// returned as it is. For single-process tools that rewrite a checkpoint (`elle grow`).
    public func assemblingMomentShards(path: String) throws -> Checkpoint {
        guard let writers = state.momentShards, let parameters = tensor("parameters") else { return self }
        let layout = ShardLayout(count: parameters.count, ranks: writers)
        let m = FloatBuffer(count: parameters.count), v = FloatBuffer(count: parameters.count)
        for rank in 0..<writers {
            let shard = try momentShard(rank, path: path)
            let range = layout.range(of: rank)
            m.pointer.advanced(by: range.lowerBound).update(from: shard.m.pointer, count: range.count)
            v.pointer.advanced(by: range.lowerBound).update(from: shard.v.pointer, count: range.count)
        }
        var whole = self
        whole.state.momentShards = nil
        whole.tensors = tensors.filter { $0.name != "adam.m" && $0.name != "adam.v" } + [("adam.m", m), ("adam.v", v)]
        return whole
    }
}

/// ZeRO-1's parameter all-gather as the next forward pass consumes it (`LanguageModel.arrivals`):
/// a part of the buffer is in place once every message that starts below its end is complete,
/// sent or received (a rank's own shard goes out from the buffer the next update writes). The
/// messages are waited for in buffer order, under the watchdog; the first failure is kept
/// (`failure`) and ends the waiting, for the trainer to throw.
final class ShardArrivals: ParameterArrivals {
    typealias Message = (range: Range<Int>, collective: PendingCollective)
    private let messages: [Message]
    private var next = 0
    private(set) var failure: Error?

    init(_ messages: [Message]) {
        self.messages = messages.sorted { $0.range.lowerBound < $1.range.lowerBound }
    }

    func waitFor(through end: Int) {
        while next < messages.count && messages[next].range.lowerBound < end {
            if failure == nil {
                do { try messages[next].collective.wait() } catch { failure = error }
            }
            next += 1
        }
    }
}
