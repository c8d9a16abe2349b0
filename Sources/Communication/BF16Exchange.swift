import CMPI
import Foundation
import Tensors

/// The bf16 wire of `startTreeSum` and `startTreeReduce` (`--allreduce-dtype bf16`): half the
/// bytes of float32. Each contribution is rounded to bf16 once; sums are float32, added in the
/// pairwise tree over rank order (`pairwiseSum`). bf16 travels as bytes (two per value).
extension MPICommunicator {
    /// All-to-all of bf16 shares, each rank's share summed in float32 and rounded to bf16, then
    /// an all-gather of the rounded sums: every rank ends with the same values.
    ///
    /// Two ranks: one MPI all-reduce of the bf16 values with the shim's bf16 sum (a user
    /// operation that widens, adds in float32 and rounds: the same bits), which MPI advances in
    /// the background like the float32 all-reduce. More ranks need the float32 tree, so the
    /// all-gather starts only once the all-to-all is waited for (after backward).
    func startTreeSumBF16(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) throws -> PendingCollective {
        if size == 2 {
            let values = Buffer<BF16>(count: count)
            BF16Convert.convert(buffer, values.pointer, count: count)
            let sequence = watchdog.begin()
            let sum = try request("MPI_Iallreduce", label: label, sequence: sequence) {
                cmpi_iallreduce(values.pointer, Int64(count), CMPI_BF16, CMPI_SUM_BF16, $0)
            }
            return PendingCollective(request: sum, label: label, then: [{
                BF16Convert.widenSerial(values.pointer, buffer, count: count)
                return nil
            }])
        }
        let w = size, share = (count + w - 1) / w, sequence = watchdog.begin()
        let outgoing = Buffer<BF16>(count: w * share), incoming = Buffer<BF16>(count: w * share)
        BF16Convert.convert(buffer, outgoing.pointer, count: count)
        let first = try request("MPI_Ialltoall", label: label, sequence: sequence) {
            cmpi_ialltoall(outgoing.pointer, incoming.pointer, Int64(2 * share), CMPI_BYTE, $0)
        }
        // The rounded sums of every owner, as bf16, widened into `buffer` at the end.
        let gathered = Buffer<BF16>(count: max(count, 1))
        let exchange = try ShareExchange(self, into: UnsafeMutableRawPointer(gathered.pointer), count: count, share: share,
                                         datatype: CMPI_BYTE, unitsPerElement: 2, sequence: sequence, label: label)
        return PendingCollective(request: first, label: label, stagesMayRunEarly: true, then: [
            {
                // incoming holds rank r's share at r * share: widen, add in the tree, round into share 0.
                let sums = FloatBuffer(count: w * share, zeroed: false)
                BF16Convert.widenSerial(incoming.pointer, sums.pointer, count: w * share)
                pairwiseSum((0..<w).map { sums.pointer + $0 * share }, count: share)
                BF16Convert.serial(sums.pointer, incoming.pointer, count: share)
                let mine = exchange.mine
                (gathered.pointer + mine.lowerBound).update(from: incoming.pointer, count: mine.count)
                try exchange.send(incoming.pointer)
                return nil
            },
        ] + exchange.waits {
            withExtendedLifetime((outgoing, incoming)) {}  // sent from until here
            BF16Convert.widenSerial(gathered.pointer, buffer, count: count)
        }, companions: exchange.receives)
    }

    /// Non-roots send their values rounded to bf16; root rounds its own the same way, widens all
    /// and adds them in float32 into `buffer`.
    func startTreeReduceBF16(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, label: String) throws -> PendingCollective {
        let sequence = watchdog.begin()
        if count == 0 { return .completed(label) }
        if rank != root {
            let rounded = Buffer<BF16>(count: count)
            BF16Convert.convert(buffer, rounded.pointer, count: count)
            let send = try request("MPI_Isend", label: label, sequence: sequence) {
                cmpi_isend(rounded.pointer, Int64(2 * count), CMPI_BYTE, Int32(root), Self.reduceTag, $0)
            }
            // The rounded copy lives until the send is complete (the final work runs inside wait()).
            return PendingCollective(requests: [send], label: label) { withExtendedLifetime(rounded) {} }
        }
        // Slot r holds rank r's bf16 values, root's own converted here.
        let slots = Buffer<BF16>(count: size * count)
        BF16Convert.convert(buffer, slots.pointer + root * count, count: count)
        var receives: [MPIRequest] = []
        for r in 0..<size where r != root {
            let slot = slots.pointer + r * count
            receives.append(try request("MPI_Irecv", label: label, sequence: sequence) {
                cmpi_irecv(slot, Int64(2 * count), CMPI_BYTE, Int32(r), Self.reduceTag, $0)
            })
        }
        let w = size
        return PendingCollective(requests: receives, label: label) {
            let values = FloatBuffer(count: w * count, zeroed: false)
            BF16Convert.widenSerial(slots.pointer, values.pointer, count: w * count)
            pairwiseSum((0..<w).map { values.pointer + $0 * count }, count: count)
            buffer.update(from: values.pointer, count: count)
        }
    }
}

/// values[0] = the pairwise sum ((v0 + v1) + (v2 + v3)) + ... of `values`, element by element
/// (the others are overwritten with partial sums): the tree of every elle reduction over ranks.
func pairwiseSum(_ values: [UnsafeMutablePointer<Float>], count: Int) {
    var step = 1
    while step < values.count {
        for r in stride(from: 0, to: values.count - step, by: 2 * step) { addInPlace(values[r], values[r + step], count: count) }
        step *= 2
    }
}
