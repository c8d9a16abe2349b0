import Communication
import Foundation
import Model
import Tensors

/// Sums an update's gradient across ranks in buckets started while the last micro-batch's
/// backward still runs (docs/SCALING.md).
///
/// The model reports ranges as they become final (`GradientObserver`): for GPT the token
/// embedding after the head, then the final norm and the blocks from the last to the first, which
/// lie at the end of the buffer and move towards its start. Adjacent reports grow an open bucket;
/// once it holds `bucketElements` or more, or a report is not adjacent to it, it is all-reduced
/// (split in equal pieces of at most `bucketElements`), and a helper thread keeps the collectives
/// moving (`PendingCollective.progressInBackground`). `finish` starts what is left and waits for
/// everything, so the bucket plan follows the reports alone: every rank runs the same backward
/// and starts the same collectives in the same order. `bucketElements == 0` starts nothing during
/// backward: one all-reduce of the whole gradient afterwards.
///
/// Only the last micro-batch overlaps: each earlier micro-batch's gradient is added to the sum
/// first (so 1 rank x N micro-batches and N ranks x 1 sum the same terms in the same order).
///
/// The tied token embedding: its lookup's gradient would arrive at the very end of backward, so
/// this observer takes it (`takeTokenEmbeddingGradient`) into a compact buffer of the rows the
/// update's tokens touch, one row slot per distinct token. The rows of all ranks are merged
/// (an all-reduce of a presence vector over the vocabulary, started at the beginning of the last
/// backward), the touched rows are all-reduced in the union's order after backward, and added to
/// the summed head gradient. The embedding's range itself is then final after the head, the first
/// thing backward does. Every rank count, 1 included, computes the embedding gradient this way,
/// so the exactness of 1 rank x N micro-batches against N ranks holds.
final class GradientSynchronizer: GradientObserver {
    let communicator: Communicator
    /// Largest all-reduce started during backward, in floats (0: none during backward).
    let bucketElements: Int
    /// What one update sent: its collectives in start order, and how long `finish` waited for
    /// them (the communication backward did not hide).
    private(set) var lastCollectives: [CollectiveRecord] = []
    private(set) var lastWaitSeconds = 0.0

    // One update's state.
    private var label = ""
    private var target: UnsafeMutablePointer<Float>?
    private var count = 0
    /// Added into `target` range by range as they become final (the last micro-batch's gradient
    /// when accumulating); nil when `target` is the model's own gradient buffer.
    private var source: UnsafeMutablePointer<Float>?
    /// Partial sums of earlier micro-batches folded into `source` first, newest first
    /// (`MicroBatchSum`: the pairwise tree's right-hand subtrees).
    private var partials: [UnsafePointer<Float>] = []
    private var overlapping = false
    /// Ranges reported final (and summed into `target`) in this update.
    private var reported: [Range<Int>] = []
    /// Reported ranges not yet all-reduced, adjacent to each other.
    private var open: Range<Int>?
    /// A collective that failed to start inside a report, thrown by `finish`.
    private var deferredError: Error?
    private var pending: [(collective: PendingCollective, range: Range<Int>)] = []
    private var shards: ShardLayout?
    private var wire = Precision.fp32
    /// ZeRO-1: floats of received gradient pieces this rank, as owner, holds until their sums
    /// are taken (`startTreeReduce`'s staging), and the reductions that hold them, oldest first.
    /// Before another starts, the ones already received are summed and their staging freed; past
    /// `stagingLimit` (4 buckets per sending rank: only when the network falls that far behind)
    /// the oldest is waited for, so the staging never grows to a whole shard during backward.
    private var staged: [(collective: PendingCollective, floats: Int)] = []
    private var stagedFloats = 0
    private var stagingLimit: Int { 4 * max(bucketElements, 1) * max(communicator.size - 1, 1) }

    // The tied token embedding's lookup gradient, by row slot (one slot per distinct token).
    private let embeddingRows = TokenRowGradients()

    init(communicator: Communicator, bucketElements: Int) {
        self.communicator = communicator
        self.bucketElements = bucketElements
    }

    /// Begins an update whose summed gradient ends in `target` (`count` floats).
    /// With `shards` (ZeRO-1) each range is summed onto the rank owning it only.
    /// `wire` is what the gradient crosses the network as (`Communicator.startTreeSum`).
    func beginUpdate(target: UnsafeMutablePointer<Float>, count: Int, shards: ShardLayout? = nil, wire: Precision = .fp32, label: String) {
        self.shards = shards
        self.wire = wire
        self.target = target
        self.count = count
        self.label = label
        source = nil
        overlapping = false
        open = nil
        reported = []
        pending = []
        staged = []
        stagedFloats = 0
        deferredError = nil
        lastCollectives = []
        embeddingRows.beginUpdate()
    }

    /// Before each micro-batch's backward. On the last one, collectives start as ranges become
    /// final; `gradient` (the model's buffer) is added into the target first when it is not the
    /// target itself.
    func beginMicroBatch(last: Bool, gradient: UnsafeMutablePointer<Float>, partials: [UnsafePointer<Float>] = []) {
        overlapping = last
        source = last && gradient != target! ? gradient : nil
        self.partials = last ? partials : []
        embeddingRows.beginMicroBatch(last: last)
    }

    /// After each micro-batch's backward.
    func endMicroBatch() {
        embeddingRows.endMicroBatch()
    }

    // MARK: GradientObserver

    func gradientsFinal(_ range: Range<Int>) {
        guard overlapping, !range.isEmpty, let target else { return }
        addLastMicroBatch(range, into: target)
        reported.append(range)
        guard bucketElements > 0 else { return }  // everything is sent after backward
        do {
            // 3+ ranks: buckets whose all-to-all is complete send their sums now (`advanceIfReady`).
            if communicator.size > 2 { for (collective, _) in pending { try collective.advanceIfReady() } }
            if let current = open, current.lowerBound == range.upperBound {
                open = range.lowerBound..<current.upperBound
            } else {
                if let current = open { try startBucket(current) }
                open = range
            }
            if let current = open, current.count >= bucketElements {
                open = nil
                try startBucket(current)
            }
        } catch {
            deferredError = deferredError ?? error
        }
    }

    func takeTokenEmbeddingGradient(tokens: UnsafePointer<Int32>, count: Int, rows: Int, width: Int,
                                    offset: Int) -> TokenEmbeddingGradient? {
        let destination = embeddingRows.take(tokens: tokens, count: count, vocab: rows, width: width, offset: offset)
        if overlapping && communicator.size > 1 {
            // Every token of the update is known now: merge the touched rows across ranks while backward runs.
            lastCollectives.append(CollectiveRecord(kind: .sum, count: rows))
            do {
                try embeddingRows.startMerge(communicator, label: "\(label): token rows")
            } catch {
                deferredError = deferredError ?? error
            }
        }
        return destination
    }

    // MARK: finishing

    /// Starts what backward left (the open bucket, unreported ranges, the embedding rows), waits
    /// for every collective and adds the embedding rows in. Afterwards `target` holds the sum
    /// over all ranks and micro-batches.
    func finish() throws {
        guard let target else { preconditionFailure("finish without beginUpdate") }
        let waitStart = DispatchTime.now().uptimeNanoseconds
        if let deferredError { throw deferredError }
        // What the model did not report is final now.
        let gaps = unreported()
        for gap in gaps { addLastMicroBatch(gap, into: target) }
        if bucketElements == 0 {
            try start(0..<count)
        } else {
            if let current = open { try startBucket(current) }
            open = nil
            for gap in gaps { try startBucket(gap) }
        }
        let rows = try embeddingRows.startRowSum(communicator, label: "\(label): token-embedding rows")
        if rows > 0 && communicator.size > 1 { lastCollectives.append(CollectiveRecord(kind: .sum, count: rows)) }
        for (collective, _) in pending { try collective.wait() }
        pending = []
        for (collective, _) in staged { try collective.wait() }
        staged = []
        stagedFloats = 0
        try embeddingRows.finish(into: target)
        lastWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - waitStart) / 1e9
        self.target = nil
        source = nil
    }

    /// target[range] = bottom partial + (... + (newer partial + last micro-batch)): the last
    /// micro-batch's part of the pairwise sum, for a range backward has finished.
    private func addLastMicroBatch(_ range: Range<Int>, into target: UnsafeMutablePointer<Float>) {
        guard let source else { return }
        for partial in partials { addInPlace(source + range.lowerBound, partial + range.lowerBound, count: range.count) }
        addInPlace(target + range.lowerBound, source + range.lowerBound, count: range.count)
    }

    /// All-reduces `range` in equal pieces of at most `bucketElements`.
    private func startBucket(_ range: Range<Int>) throws {
        let pieces = (range.count + bucketElements - 1) / bucketElements
        for k in 0..<pieces {
            let lower = range.lowerBound + range.count * k / pieces
            let upper = range.lowerBound + range.count * (k + 1) / pieces
            try start(lower..<upper)
        }
    }

    private func start(_ range: Range<Int>) throws {
        guard communicator.size > 1, !range.isEmpty, let target else { return }
        if let shards {
            for piece in shards.interleavedMessages(of: shards.pieces(of: range)) {
                let owned = piece.owner == communicator.rank ? piece.range.count * (communicator.size - 1) : 0
                while let oldest = staged.first, try oldest.collective.finishIfReady() {
                    staged.removeFirst()
                    stagedFloats -= oldest.floats
                }
                while owned > 0, stagedFloats + owned > stagingLimit, !staged.isEmpty {
                    let oldest = staged.removeFirst()
                    try oldest.collective.wait()
                    stagedFloats -= oldest.floats
                }
                let collective = try communicator.startTreeReduce(
                    target + piece.range.lowerBound, count: piece.range.count, root: piece.owner, wire: wire,
                    label: "\(label) (gradient elements \(piece.range.lowerBound)..<\(piece.range.upperBound) to rank \(piece.owner))")
                collective.progressInBackground()
                if owned > 0 {
                    staged.append((collective, owned))
                    stagedFloats += owned
                } else {
                    pending.append((collective, piece.range))
                }
                lastCollectives.append(CollectiveRecord(kind: .reduce, count: piece.range.count, root: piece.owner, wire: wire))
            }
            return
        }
        let collective = try communicator.startTreeSum(
            target + range.lowerBound, count: range.count, wire: wire,
            label: "\(label) (gradient elements \(range.lowerBound)..<\(range.upperBound))")
        collective.progressInBackground()
        pending.append((collective, range))
        lastCollectives.append(CollectiveRecord(kind: .sum, count: range.count, wire: wire))
    }

    /// Parts of the buffer the model did not report, from the end of the buffer to its start.
    private func unreported() -> [Range<Int>] {
        var gaps: [Range<Int>] = []
        var end = count
        for range in reported.sorted(by: { $0.lowerBound > $1.lowerBound }) {
            if range.upperBound < end { gaps.append(range.upperBound..<end) }
            end = min(end, range.lowerBound)
        }
        if end > 0 { gaps.append(0..<end) }
        return gaps
    }
}

/// One collective an update started, as `elle bench comm` replays it without the computation:
/// a tree sum (all-reduce), a tree reduce onto `root` (ZeRO-1's gradient pieces) or a broadcast
/// from `root` (ZeRO-1's parameter all-gather), of `count` floats sent as `wire`.
public struct CollectiveRecord: Sendable, Equatable {
    public enum Kind: Sendable { case sum, reduce, broadcast }
    public var kind: Kind
    public var count: Int
    public var root = 0
    public var wire = Precision.fp32

    /// Bytes one rank's copy of the data takes on the wire.
    public var bytes: Int { count * (wire == .bf16 ? 2 : 4) }

    /// Starts every one of `records` on consecutive parts of `buffer` (at least their total
    /// count), then waits for all. Collective.
    public static func replay(_ records: [CollectiveRecord], on communicator: Communicator, buffer: UnsafeMutablePointer<Float>) throws {
        var pending: [PendingCollective] = []
        var offset = 0
        for record in records {
            let at = buffer + offset, label = "replayed \(record.kind) of \(record.count) floats"
            let collective: PendingCollective
            switch record.kind {
            case .sum: collective = try communicator.startTreeSum(at, count: record.count, wire: record.wire, label: label)
            case .reduce: collective = try communicator.startTreeReduce(at, count: record.count, root: record.root, wire: record.wire, label: label)
            case .broadcast: collective = try communicator.startDirectBroadcast(at, count: record.count, root: record.root, label: label)
            }
            collective.progressInBackground()
            pending.append(collective)
            offset += record.count
        }
        for collective in pending { try collective.wait() }
    }
}

/// The token-embedding lookup's gradient of one update, kept by row slot: each distinct token
/// gets the next slot, each micro-batch scatters into zeroed slots (`scratch`), and the update's
/// sum (`sum`) adds the micro-batches in the same pairwise tree as the rest of the gradient
/// (`MicroBatchSum`): a stack of partial sums (`levels`) folded once the last micro-batch is in.
/// Buffers grow to the largest update seen and are reused.
final class TokenRowGradients {
    private var vocab = 0, width = 0, offset = 0
    /// Per vocabulary row, its slot in this update, or -1.
    private var slotOfRow: [Int32] = []
    /// Rows in slot order.
    private var rows: [Int32] = []
    /// Per position of the current micro-batch, its slot.
    private var positionSlots = Buffer<Int32>(count: 0)
    private var scratch = FloatBuffer(count: 0)
    private var sum = FloatBuffer(count: 0)
    /// Partial sums over slots (micro-batches summed, buffer, floats valid: slots that appeared
    /// later count as zero), bottom first; `spare` buffers are reused.
    private var levels: [(size: Int, buffer: FloatBuffer, valid: Int)] = []
    private var spare: [FloatBuffer] = []
    /// Slots of the current micro-batch, each once (`slotStamp` marks those listed), and the
    /// number of positions it has.
    private var microSlots: [Int32] = []
    private var slotStamp: [Int32] = []
    private var stamp: Int32 = 0
    private var positions = 0
    private var active = false
    /// After the merge: rows present on any rank (count per row, summed across ranks).
    private var presence = FloatBuffer(count: 0)
    private var merge: PendingCollective?
    private var merged: [Int32] = []
    private var rowSum = FloatBuffer(count: 0)
    private var rowCollective: PendingCollective?

    func beginUpdate() {
        for row in rows { slotOfRow[Int(row)] = -1 }
        rows = []
        spare += levels.map(\.buffer)
        levels = []
        active = false
        merge = nil
        rowCollective = nil
        merged = []
    }

    func beginMicroBatch(last: Bool) { positions = 0 }

    /// Assigns slots to `tokens` and returns a zeroed destination for this micro-batch.
    func take(tokens: UnsafePointer<Int32>, count: Int, vocab: Int, width: Int, offset: Int) -> TokenEmbeddingGradient {
        if slotOfRow.count != vocab {
            slotOfRow = [Int32](repeating: -1, count: vocab)
            slotStamp = [Int32](repeating: 0, count: vocab)
            stamp = 0
        }
        precondition(rows.isEmpty || (width == self.width && offset == self.offset), "token embedding changed within an update")
        self.vocab = vocab
        self.width = width
        self.offset = offset
        active = true
        if positionSlots.count < count { positionSlots = Buffer<Int32>(count: count) }
        microSlots.removeAll(keepingCapacity: true)
        let firstNew = rows.count
        for i in 0..<count {
            let row = Int(tokens[i])
            var slot = slotOfRow[row]
            if slot < 0 {
                slot = Int32(rows.count)
                slotOfRow[row] = slot
                rows.append(Int32(row))
            }
            positionSlots[i] = slot
        }
        positions = count
        _ = firstNew
        grow(&scratch, to: rows.count * width, keeping: 0)
        // Every slot this micro-batch touches starts at zero in the scratch (whole rows: a slot
        // may be touched many times).
        stamp &+= 1
        for i in 0..<count {
            let slot = positionSlots[i]
            if slotStamp[Int(slot)] != stamp {
                slotStamp[Int(slot)] = stamp
                microSlots.append(slot)
            }
        }
        for slot in microSlots { (scratch.pointer + Int(slot) * width).update(repeating: 0, count: width) }
        return TokenEmbeddingGradient(gradient: scratch.pointer, rows: UnsafePointer(positionSlots.pointer))
    }

    /// Pushes the micro-batch's rows (0 + its gradient where it touched a slot, 0 elsewhere) as
    /// a partial sum and merges equal-sized neighbours.
    func endMicroBatch() {
        guard positions > 0 else { return }
        let floats = rows.count * width
        var entry = spare.popLast() ?? FloatBuffer(count: 0)
        grow(&entry, to: floats, keeping: 0)
        entry.pointer.update(repeating: 0, count: floats)
        for slot in microSlots {
            let at = Int(slot) * width
            addInPlace(entry.pointer + at, scratch.pointer + at, count: width)
        }
        levels.append((1, entry, floats))
        while levels.count >= 2 && levels[levels.count - 1].size == levels[levels.count - 2].size {
            let top = levels.removeLast()
            extend(levels.count - 1, to: floats)
            addInPlace(levels[levels.count - 1].buffer.pointer, top.buffer.pointer, count: floats)
            levels[levels.count - 1].size *= 2
            spare.append(top.buffer)
        }
        positions = 0
    }

    /// Zero-fills levels[k] for the slots that appeared since it was made.
    private func extend(_ k: Int, to floats: Int) {
        var buffer = levels[k].buffer
        let valid = levels[k].valid
        guard valid < floats else { return }
        grow(&buffer, to: floats, keeping: valid)
        (buffer.pointer + valid).update(repeating: 0, count: floats - valid)
        levels[k].buffer = buffer
        levels[k].valid = floats
    }

    /// The update's sum over slots: the partial sums folded newest first (0 + newest, then each
    /// older one added), the pairwise tree's last steps.
    private func foldLevels() {
        let floats = rows.count * width
        grow(&sum, to: floats, keeping: 0)
        sum.pointer.update(repeating: 0, count: floats)
        for k in levels.indices.reversed() {
            extend(k, to: floats)
            addInPlace(sum.pointer, levels[k].buffer.pointer, count: floats)
        }
    }

    /// Starts merging the touched rows across ranks (a presence count per vocabulary row).
    func startMerge(_ communicator: Communicator, label: String) throws {
        grow(&presence, to: vocab, keeping: 0)
        presence.pointer.update(repeating: 0, count: vocab)
        for row in rows { presence[Int(row)] = 1 }
        merge = try communicator.startAllReduce(presence.pointer, count: vocab, .sum, label: label)
        merge?.progressInBackground()
    }

    /// Packs the sum in the merged rows' order (rows present on any rank, ascending) and starts
    /// its all-reduce. Returns the number of floats sent.
    func startRowSum(_ communicator: Communicator, label: String) throws -> Int {
        guard active else { return 0 }
        foldLevels()
        if communicator.size > 1 {
            guard let merge else { preconditionFailure("\(label): the rows of the last micro-batch were not merged") }
            try merge.wait()
            merged = (0..<vocab).compactMap { presence[$0] > 0 ? Int32($0) : nil }
        } else {
            merged = rows.sorted()
        }
        grow(&rowSum, to: merged.count * width, keeping: 0)
        for (i, row) in merged.enumerated() {
            let out = rowSum.pointer + i * width
            let slot = slotOfRow[Int(row)]
            if slot >= 0 {
                out.update(from: sum.pointer + Int(slot) * width, count: width)
            } else {
                out.update(repeating: 0, count: width)
            }
        }
        guard communicator.size > 1 else { return 0 }
        rowCollective = try communicator.startTreeSum(rowSum.pointer, count: merged.count * width, label: label)
        rowCollective?.progressInBackground()
        return merged.count * width
    }

    /// Adds the summed rows into the token embedding's gradient (in `gradients`, at `offset`).
    func finish(into gradients: UnsafeMutablePointer<Float>) throws {
        guard active else { return }
        try rowCollective?.wait()
        for (i, row) in merged.enumerated() {
            addInPlace(gradients + offset + Int(row) * width, rowSum.pointer + i * width, count: width)
        }
        active = false
    }

    /// Makes `buffer` hold at least `count` floats, keeping its first `keeping`.
    private func grow(_ buffer: inout FloatBuffer, to count: Int, keeping: Int) {
        guard buffer.count < count else { return }
        let larger = FloatBuffer(count: max(count, buffer.count * 2))
        let old = buffer
        withExtendedLifetime(old) {
            if keeping > 0 { larger.pointer.update(from: old.pointer, count: keeping) }
        }
        buffer = larger
    }
}
