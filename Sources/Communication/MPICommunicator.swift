import CMPI
import Foundation
import Tensors

/// An MPI error code turned into a Swift error carrying MPI's own message.
public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let message: String
    public var description: String { "MPI \(call) failed (code \(code)): \(message)" }

    static func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        if code == 0 { return }
        var buffer = [CChar](repeating: 0, count: 512)
        cmpi_error_string(code, &buffer, Int32(buffer.count))
        throw MPIError(call: call(), code: code, message: String(cString: buffer))
    }
}

/// The world communicator of an MPI job (through the CMPI shim). Only the thread that created it
/// starts and waits for collectives; a helper thread (`BackgroundProgress`) may test the ones
/// handed to `PendingCollective.progressInBackground()`. The shim serializes the two, which needs
/// MPI_THREAD_SERIALIZED; where MPI grants only MPI_THREAD_FUNNELED there is no helper thread
/// and collectives progress only while waited for.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    public let hostName: String
    let watchdog: Watchdog
    /// Nil when MPI granted less than MPI_THREAD_SERIALIZED.
    let progress: BackgroundProgress?
    private var finalized = false

    /// Initializes MPI (once per process). `watchdogSeconds` bounds every collective's wait.
    public init(watchdogSeconds: Double = Watchdog.defaultTimeout) throws {
        var provided = CMPI_THREAD_SINGLE
        try MPIError.check(cmpi_init(CMPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread")
        guard provided.rawValue >= CMPI_THREAD_FUNNELED.rawValue else {
            throw MPIError(call: "MPI_Init_thread", code: -1,
                           message: "the MPI library granted thread level \(provided.rawValue); elle needs MPI_THREAD_FUNNELED")
        }
        var r: Int32 = 0, s: Int32 = 0, lr: Int32 = 0, ls: Int32 = 0
        try MPIError.check(cmpi_rank(&r), "MPI_Comm_rank")
        try MPIError.check(cmpi_size(&s), "MPI_Comm_size")
        try MPIError.check(cmpi_local_rank(&lr, &ls), "MPI_Comm_split_type")
        var name = [CChar](repeating: 0, count: 256)
        try MPIError.check(cmpi_processor_name(&name, Int32(name.count)), "MPI_Get_processor_name")
        rank = Int(r)
        size = Int(s)
        localRank = Int(lr)
        localSize = Int(ls)
        hostName = String(cString: name)
        watchdog = try Watchdog(rank: rank, size: size, timeout: watchdogSeconds)
        progress = provided.rawValue >= CMPI_THREAD_SERIALIZED.rawValue ? BackgroundProgress() : nil
    }

    /// True when this process was started by an MPI launcher (mpirun, srun): Open MPI, PMIx and
    /// Slurm's PMI export one of these variables to every rank.
    public static var launchedByMPI: Bool {
        let names = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        return names.contains { getenv($0) != nil }
    }

    /// Largest element count per MPI call; longer buffers go in several calls (MPI counts are
    /// `int`). Tests lower it to exercise the splitting.
    public static var chunkElements: Int {
        get { Int(cmpi_chunk_elements()) }
        set { cmpi_set_chunk_elements(Int64(newValue)) }
    }

    private func start(_ label: String, _ call: String,
                       _ body: (UnsafeMutablePointer<OpaquePointer?>) -> Int32) throws -> PendingCollective {
        let sequence = watchdog.begin()
        var handle: OpaquePointer?
        try MPIError.check(body(&handle), "\(call) (\(label))")
        return PendingCollective(request: MPIRequest(handle: handle, watchdog: watchdog, sequence: sequence, progress: progress),
                                 label: label)
    }

    public func startAllReduce<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ op: ReduceOp,
                                                     label: String) throws -> PendingCollective {
        try start(label, "MPI_Iallreduce") { cmpi_iallreduce(buffer, Int64(count), T.kind.datatype, op.op, $0) }
    }

    /// Two ranks: MPI's sum (a + b on both, the same bits whatever its algorithm). More: each
    /// rank receives every rank's share of the buffer (all-to-all), adds the shares in a
    /// pairwise tree over rank order, and sends its share of the sums to every rank point to
    /// point (`ShareExchange`: the receives are posted at once, the sends start as soon as this
    /// rank's all-to-all is complete, inside backward when the owner calls `advanceIfReady`).
    /// Each float crosses the network twice, as in a ring all-reduce.
    public func startTreeSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, wire: Precision, label: String) throws -> PendingCollective {
        if wire == .bf16 { return try startTreeSumBF16(buffer, count: count, label: label) }
        if size <= 2 { return try startAllReduce(buffer, count: count, .sum, label: label) }
        let w = size, share = (count + w - 1) / w, sequence = watchdog.begin()
        let outgoing = FloatBuffer(count: w * share), incoming = FloatBuffer(count: w * share)
        outgoing.pointer.update(from: buffer, count: count)
        let first = try request("MPI_Ialltoall", label: label, sequence: sequence) {
            cmpi_ialltoall(outgoing.pointer, incoming.pointer, Int64(share), CMPI_FLOAT32, $0)
        }
        // Every other owner's share of the sums lands in `buffer` itself.
        let exchange = try ShareExchange(self, into: UnsafeMutableRawPointer(buffer), count: count, share: share,
                                         datatype: CMPI_FLOAT32, unitsPerElement: 1, sequence: sequence, label: label)
        return PendingCollective(request: first, label: label, stagesMayRunEarly: true, then: [
            {
                // incoming holds rank r's share at r * share: add them pairwise into share 0.
                pairwiseSum((0..<w).map { incoming.pointer + $0 * share }, count: share)
                let mine = exchange.mine
                (buffer + mine.lowerBound).update(from: incoming.pointer, count: mine.count)
                try exchange.send(incoming.pointer)
                return nil
            },
        ] + exchange.waits { withExtendedLifetime((outgoing, incoming)) {} }, companions: exchange.receives)
    }

    /// Message tags of `ShareExchange`: one per tree sum, from its watchdog sequence number.
    static func shareTag(_ sequence: Int64) -> Int32 { 0x4000 + Int32(sequence % 0x4000) }

    /// Starts one MPI operation numbered `sequence` for the watchdog.
    func request(_ call: String, label: String, sequence: Int64,
                 _ body: (UnsafeMutablePointer<OpaquePointer?>) -> Int32) throws -> MPIRequest {
        var handle: OpaquePointer?
        try MPIError.check(body(&handle), "\(call) (\(label))")
        return MPIRequest(handle: handle, watchdog: watchdog, sequence: sequence, progress: progress)
    }

    /// Message tag of `startDirectBroadcast`.
    static let broadcastTag: Int32 = 0x2E51

    public func startDirectBroadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, label: String) throws -> PendingCollective {
        let sequence = watchdog.begin()
        if count == 0 || size == 1 { return .completed(label) }
        var requests: [MPIRequest] = []
        if rank == root {
            for r in 0..<size where r != root {
                requests.append(try request("MPI_Isend", label: label, sequence: sequence) {
                    cmpi_isend(buffer, Int64(count), CMPI_FLOAT32, Int32(r), Self.broadcastTag, $0)
                })
            }
        } else {
            requests.append(try request("MPI_Irecv", label: label, sequence: sequence) {
                cmpi_irecv(buffer, Int64(count), CMPI_FLOAT32, Int32(root), Self.broadcastTag, $0)
            })
        }
        return PendingCollective(requests: requests, label: label)
    }

    /// Message tag of `startTreeReduce`'s point-to-point traffic (the watchdog has its own). Every
    /// rank starts its reductions in the same order and MPI does not let messages between two
    /// ranks with one tag overtake each other, so each receive matches the right send.
    static let reduceTag: Int32 = 0x2E50

    public func startTreeReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, wire: Precision, label: String) throws -> PendingCollective {
        if wire == .bf16 { return try startTreeReduceBF16(buffer, count: count, root: root, label: label) }
        let sequence = watchdog.begin()
        func post(_ call: String, _ body: (UnsafeMutablePointer<OpaquePointer?>) -> Int32) throws -> MPIRequest {
            try request(call, label: label, sequence: sequence, body)
        }
        if count == 0 { return .completed(label) }
        if rank != root {
            let send = try post("MPI_Isend") { cmpi_isend(buffer, Int64(count), CMPI_FLOAT32, Int32(root), Self.reduceTag, $0) }
            return PendingCollective(requests: [send], label: label)
        }
        // Rank r's values: root's own in `buffer`, the others' in `staging` (rank order, root skipped).
        let staging = FloatBuffer(count: (size - 1) * count, zeroed: false)
        var values: [UnsafeMutablePointer<Float>] = []
        var receives: [MPIRequest] = []
        for r in 0..<size {
            if r == root { values.append(buffer); continue }
            let slot = staging.pointer + (r < root ? r : r - 1) * count
            values.append(slot)
            receives.append(try post("MPI_Irecv") { cmpi_irecv(slot, Int64(count), CMPI_FLOAT32, Int32(r), Self.reduceTag, $0) })
        }
        return PendingCollective(requests: receives, label: label) {
            withExtendedLifetime(staging) {
                pairwiseSum(values, count: count)
                if values[0] != buffer { buffer.update(from: values[0], count: count) }
            }
        }
    }

    public func startBroadcast<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int,
                                                     label: String) throws -> PendingCollective {
        try start(label, "MPI_Ibcast") { cmpi_ibcast(buffer, Int64(count), T.kind.datatype, Int32(root), $0) }
    }

    public func startBarrier(label: String) throws -> PendingCollective {
        try start(label, "MPI_Ibarrier") { cmpi_ibarrier($0) }
    }

    public func startGather<T: CollectiveElement>(_ send: UnsafePointer<T>, count: Int, into receive: UnsafeMutablePointer<T>,
                                                  root: Int, label: String) throws -> PendingCollective {
        try start(label, "MPI_Igather") { cmpi_igather(send, receive, Int64(count), T.kind.datatype, Int32(root), $0) }
    }

    public func startAllGather<T: CollectiveElement>(_ send: UnsafePointer<T>, count: Int, into receive: UnsafeMutablePointer<T>,
                                                     label: String) throws -> PendingCollective {
        try start(label, "MPI_Iallgather") { cmpi_iallgather(send, receive, Int64(count), T.kind.datatype, $0) }
    }

    public func abort(code: Int32) -> Never {
        fflush(stdout)
        cmpi_abort(code)
        exit(code)  // MPI_Abort does not return; this only satisfies the type checker
    }

    public func finalize() {
        if finalized { return }
        finalized = true
        progress?.stop()
        watchdog.close()
        _ = cmpi_finalize()
    }
}

/// One started MPI operation and the watchdog that waits for it. The shim's handle lives at a
/// fixed address that only shim calls (serialized by its mutex) read and write, since the
/// training thread and the progress thread may both test it.
final class MPIRequest: @unchecked Sendable {
    private let handle: UnsafeMutablePointer<OpaquePointer?>
    let watchdog: Watchdog
    let sequence: Int64
    let progress: BackgroundProgress?

    init(handle: OpaquePointer?, watchdog: Watchdog, sequence: Int64, progress: BackgroundProgress?) {
        self.handle = .allocate(capacity: 1)
        self.handle.initialize(to: handle)
        self.watchdog = watchdog
        self.sequence = sequence
        self.progress = progress
    }

    deinit { handle.deallocate() }

    func test() throws -> Bool {
        var done: Int32 = 0
        try MPIError.check(cmpi_test(handle, &done), "MPI_Test")
        return done != 0
    }

    func wait(label: String) throws { try watchdog.wait(for: self, label: label) }

    func progressInBackground() { progress?.add(self) }
}

extension ElementKind {
    var datatype: cmpi_datatype {
        switch self {
        case .float32: CMPI_FLOAT32
        case .float64: CMPI_FLOAT64
        case .int64: CMPI_INT64
        case .uint64: CMPI_UINT64
        case .byte: CMPI_BYTE
        }
    }
}

extension ReduceOp {
    var op: cmpi_op {
        switch self {
        case .sum: CMPI_SUM
        case .max: CMPI_MAX
        case .min: CMPI_MIN
        }
    }
}

/// The second half of a tree sum on 3+ ranks, point to point: owner o's share of the sums
/// (elements o * share ..< (o + 1) * share, clipped to `count`) goes from o to every other rank.
/// The receives into `destination` are posted when the sum starts; this rank's sends start once
/// its own share is summed. Each tree sum has its own tag (`MPICommunicator.shareTag`), so the
/// shares of different sums never match each other's receives whatever order the ranks send
/// them in: unlike a second collective, the sends need no agreement on when they start, and a
/// rank may start them during backward, as soon as its first half is complete.
final class ShareExchange {
    private let communicator: MPICommunicator
    private let sequence: Int64
    private let label: String
    private let datatype: cmpi_datatype
    private let unitsPerElement: Int
    /// This rank's share of the elements.
    let mine: Range<Int>
    let receives: [MPIRequest]
    private var sends: [MPIRequest] = []

    /// `unitsPerElement`: `datatype` units per element (2 bytes for bf16 sent as bytes).
    init(_ communicator: MPICommunicator, into destination: UnsafeMutableRawPointer, count: Int, share: Int,
         datatype: cmpi_datatype, unitsPerElement: Int, sequence: Int64, label: String) throws {
        let w = communicator.size, rank = communicator.rank
        let shares = (0..<w).map { min($0 * share, count)..<min(($0 + 1) * share, count) }
        let bytesPerElement = datatype == CMPI_BYTE ? unitsPerElement : 4
        var receives: [MPIRequest] = []
        for owner in 0..<w where owner != rank && !shares[owner].isEmpty {
            let range = shares[owner]
            receives.append(try communicator.request("MPI_Irecv", label: label, sequence: sequence) {
                cmpi_irecv(destination + range.lowerBound * bytesPerElement, Int64(range.count * unitsPerElement), datatype,
                           Int32(owner), MPICommunicator.shareTag(sequence), $0)
            })
        }
        self.communicator = communicator
        self.sequence = sequence
        self.label = label
        self.datatype = datatype
        self.unitsPerElement = unitsPerElement
        self.receives = receives
        mine = shares[rank]
    }

    /// Sends this rank's summed share (`mine.count` elements at `values`) to every other rank;
    /// `values` must stay valid until the collective completes.
    func send(_ values: UnsafeRawPointer) throws {
        guard !mine.isEmpty else { return }
        for r in 0..<communicator.size where r != communicator.rank {
            sends.append(try communicator.request("MPI_Isend", label: label, sequence: sequence) { [self] in
                cmpi_isend(values, Int64(mine.count * unitsPerElement), datatype, Int32(r), MPICommunicator.shareTag(sequence), $0)
            })
        }
    }

    /// Stages that wait for every send and receive, then run `finally` (local work).
    func waits(finally: @escaping () -> Void) -> [() throws -> MPIRequest?] {
        let sendWaits: [() throws -> MPIRequest?] = (0..<max(communicator.size - 1, 0)).map { i in { [self] in i < sends.count ? sends[i] : nil } }
        let receiveWaits: [() throws -> MPIRequest?] = receives.map { receive in { receive } }
        return sendWaits + receiveWaits + [{ finally(); return nil }]
    }
}
