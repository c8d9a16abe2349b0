import Foundation
import Tensors

/// The process group a run trains in. `SingleProcess` is the debug case (one rank, collectives
/// return at once); `MPICommunicator` is the same interface over MPI, so one code path serves a
/// plain `elle train` and `mpirun -n N elle train`.
///
/// Collectives start non-blocking and return a `PendingCollective`; `wait()` finishes it under
/// the communicator's watchdog. Every rank must start the same collectives in the same order.
/// `label` says what a collective is for ("gradient all-reduce, step 12"); it appears only in
/// watchdog and error messages.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Rank among the processes on this node, and how many there are.
    var localRank: Int { get }
    var localSize: Int { get }
    var hostName: String { get }

    /// In-place all-reduce of `count` elements.
    func startAllReduce<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ op: ReduceOp,
                                              label: String) throws -> PendingCollective
    /// In-place sum of `count` floats whose bits do not depend on the library's algorithm: the
    /// ranks' values are added in a pairwise tree over rank order, ((r0 + r1) + (r2 + r3)) + ...,
    /// so a sum over a fixed tree of micro-batches gives the same bits on 1, 2, 4... ranks.
    ///
    /// `wire` is what crosses the network. `.bf16` halves the bytes (`--allreduce-dtype bf16`):
    /// every rank's values are rounded to bf16 once, the owner of each share adds them in float32
    /// in the same tree, rounds the sum to bf16 and every rank receives those rounded sums. The
    /// result is the same on every rank and for a given rank count, but not across rank counts
    /// (the shares, hence the roundings, follow the ranks). With one rank nothing is sent and
    /// nothing rounded.
    func startTreeSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, wire: Precision, label: String) throws -> PendingCollective
    /// The same pairwise tree over rank order as `startTreeSum`, but the sum lands in `root`'s
    /// `buffer` alone (the other ranks' buffers are only read, and must stay untouched until
    /// `wait()` returns): the reduce half of ZeRO-1's reduce-scatter, sent point to point to the
    /// owner of the range. With `wire` `.bf16` every rank's values (root's too) are rounded to
    /// bf16 once and added in float32; the float32 sum is not rounded.
    func startTreeReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, wire: Precision, label: String) throws -> PendingCollective
    /// Overwrites `buffer` on every rank with root's, sent point to point (one message from root to
    /// each rank): for large buffers whose broadcast must progress in the background (MPI's
    /// non-blocking broadcast moves one segment per test).
    func startDirectBroadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, label: String) throws -> PendingCollective
    /// Overwrites `buffer` on every rank with root's.
    func startBroadcast<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int,
                                              label: String) throws -> PendingCollective
    func startBarrier(label: String) throws -> PendingCollective
    /// `count` elements from every rank into `receive` (size * count, in rank order) on `root`;
    /// `receive` is untouched elsewhere.
    func startGather<T: CollectiveElement>(_ send: UnsafePointer<T>, count: Int, into receive: UnsafeMutablePointer<T>,
                                           root: Int, label: String) throws -> PendingCollective
    /// Like `startGather`, but every rank receives the result.
    func startAllGather<T: CollectiveElement>(_ send: UnsafePointer<T>, count: Int, into receive: UnsafeMutablePointer<T>,
                                              label: String) throws -> PendingCollective
    /// Ends every rank of the job at once (the way out when ranks cannot agree to stop).
    func abort(code: Int32) -> Never
    /// Ends the process group cleanly (every rank calls it).
    func finalize()
}

public enum ReduceOp: Sendable {
    case sum, max, min
}

/// Element types collectives carry.
public enum ElementKind: Sendable {
    case float32, float64, int64, uint64, byte
}

public protocol CollectiveElement {
    static var kind: ElementKind { get }
}
extension Float: CollectiveElement { public static var kind: ElementKind { .float32 } }
extension Double: CollectiveElement { public static var kind: ElementKind { .float64 } }
extension Int64: CollectiveElement { public static var kind: ElementKind { .int64 } }
extension UInt64: CollectiveElement { public static var kind: ElementKind { .uint64 } }
extension UInt8: CollectiveElement { public static var kind: ElementKind { .byte } }

/// A collective in flight. `wait()` returns once it is complete on this rank (the buffers may be
/// used again); `test()` asks without blocking. A collective may run in stages: when one MPI
/// operation completes, the next stage does its local work and starts the following operation,
/// or returns nil when there is none. Stages run only inside `wait()`: every rank waits for its
/// collectives in the same order, so every rank starts the later operations in the same order
/// (MPI requires it).
public final class PendingCollective {
    private var request: MPIRequest?
    let label: String
    private var stages: [() throws -> MPIRequest?]
    private var inBackground = false
    /// Operations already started that a later stage only waits for (handed to the progress
    /// thread together with the first).
    private let companions: [MPIRequest]
    /// Whether the stages start only point-to-point messages (or nothing), so one rank may run
    /// them before its peers do (`advanceIfReady`).
    private let stagesMayRunEarly: Bool

    init(request: MPIRequest?, label: String, stagesMayRunEarly: Bool = false, then stages: [() throws -> MPIRequest?] = [],
         companions: [MPIRequest] = []) {
        self.request = request
        self.label = label
        self.stagesMayRunEarly = stagesMayRunEarly
        self.stages = stages
        self.companions = companions
    }

    /// Operations all started already (point-to-point messages), complete once every one is,
    /// then `finally`'s local work (which starts nothing).
    convenience init(requests: [MPIRequest], label: String, finally: (() -> Void)? = nil) {
        let waits: [() throws -> MPIRequest?] = requests.dropFirst().map { next in { next } }
        let last: [() throws -> MPIRequest?] = finally.map { work in [{ work(); return nil }] } ?? []
        self.init(request: requests.first, label: label, then: waits + last, companions: Array(requests.dropFirst()))
    }

    /// Already complete (the single-process case).
    static func completed(_ label: String) -> PendingCollective { PendingCollective(request: nil, label: label) }

    /// True once the collective is complete (a staged one completes only inside `wait()`).
    public func test() throws -> Bool {
        guard let current = request else { return true }
        return try stages.isEmpty && current.test()
    }

    /// Lets a helper thread test the collective until it completes, so it progresses while this
    /// thread computes (MPI moves data only inside MPI calls). `wait()` is still needed; the
    /// buffers must not be touched before it returns. No effect without MPI.
    public func progressInBackground() {
        inBackground = true
        request?.progressInBackground()
        for companion in companions { companion.progressInBackground() }
    }

    /// Completes the collective if every operation it waits for is done (its remaining stages
    /// then only compute); returns whether it did. Never blocks. For collectives whose stages start
    /// no MPI operation (`startTreeReduce`), so finishing them early on one rank is safe.
    public func finishIfReady() throws -> Bool {
        if let current = request, try !current.test() { return false }
        for companion in companions where try !companion.test() { return false }
        try wait()
        return true
    }

    /// Runs the next stages if the operation they follow is complete, for collectives whose
    /// stages start only point-to-point messages (the tree sum's second half on 3+ ranks): a
    /// rank can then start sending its share while it still computes. Never blocks; a no-op
    /// for others (their stages start collectives, which every rank must start in the same order).
    public func advanceIfReady() throws {
        guard stagesMayRunEarly else { return }
        while !stages.isEmpty, let current = request, try current.test() { try advance() }
    }

    /// Blocks, under the watchdog, until the collective completes.
    public func wait() throws {
        while let current = request {
            try current.wait(label: label)
            try advance()
        }
    }

    /// The current operation is complete: run stages until one starts another operation.
    private func advance() throws {
        request = nil
        while !stages.isEmpty {
            if let following = try stages.removeFirst()() {
                request = following
                if inBackground { following.progressInBackground() }
                return
            }
        }
    }
}

/// An error every rank of the job raised together, as the outcome of a collective decision (a
/// configuration mismatch, diverged parameters, a checkpoint rank 0 could not read). Each rank can
/// exit normally and rank 0 alone reports it. Any other error on one rank of a multi-rank job
/// ends the whole job (`abort`), since the other ranks would otherwise wait for it forever.
public struct JobError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One process, no MPI: collectives complete at once and leave the data as it is.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localRank: Int { 0 }
    public var localSize: Int { 1 }
    public var hostName: String { ProcessInfo.processInfo.hostName }

    public func startAllReduce<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ op: ReduceOp,
                                                     label: String) throws -> PendingCollective {
        .completed(label)
    }

    public func startTreeSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, wire: Precision, label: String) throws -> PendingCollective {
        .completed(label)
    }

    public func startTreeReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, wire: Precision, label: String) throws -> PendingCollective {
        precondition(root == 0, "reduce root \(root) outside a single-process group")
        return .completed(label)
    }

    public func startDirectBroadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, label: String) throws -> PendingCollective {
        precondition(root == 0, "broadcast root \(root) outside a single-process group")
        return .completed(label)
    }

    public func startBroadcast<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int,
                                                     label: String) throws -> PendingCollective {
        precondition(root == 0, "broadcast root \(root) outside a single-process group")
        return .completed(label)
    }

    public func startBarrier(label: String) throws -> PendingCollective { .completed(label) }

    public func startGather<T: CollectiveElement>(_ send: UnsafePointer<T>, count: Int, into receive: UnsafeMutablePointer<T>,
                                                  root: Int, label: String) throws -> PendingCollective {
        precondition(root == 0, "gather root \(root) outside a single-process group")
        receive.update(from: send, count: count)
        return .completed(label)
    }

    public func startAllGather<T: CollectiveElement>(_ send: UnsafePointer<T>, count: Int, into receive: UnsafeMutablePointer<T>,
                                                     label: String) throws -> PendingCollective {
        receive.update(from: send, count: count)
        return .completed(label)
    }

    public func abort(code: Int32) -> Never { exit(code) }
    public func finalize() {}
}

/// The communicator for this process: MPI when started by a launcher (mpirun, srun), otherwise
/// single-process, with no MPI initialization at all, so debugging needs no MPI runtime.
/// `watchdogSeconds` bounds how long any collective may wait for the other ranks.
public func makeCommunicator(watchdogSeconds: Double = Watchdog.defaultTimeout) throws -> Communicator {
    MPICommunicator.launchedByMPI ? try MPICommunicator(watchdogSeconds: watchdogSeconds) : SingleProcess()
}

// MARK: blocking forms and small helpers (every rank calls them together)

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// `startTreeSum` in float32.
    public func startTreeSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) throws -> PendingCollective {
        try startTreeSum(buffer, count: count, wire: .fp32, label: label)
    }

    /// `startTreeReduce` in float32.
    public func startTreeReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, label: String) throws -> PendingCollective {
        try startTreeReduce(buffer, count: count, root: root, wire: .fp32, label: label)
    }

    public func allReduce<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ op: ReduceOp,
                                                label: String) throws {
        try startAllReduce(buffer, count: count, op, label: label).wait()
    }

    public func allReduce<T: CollectiveElement>(_ buffer: Buffer<T>, _ op: ReduceOp, label: String) throws {
        try allReduce(buffer.pointer, count: buffer.count, op, label: label)
    }

    /// One value reduced over all ranks.
    public func allReduce<T: CollectiveElement>(_ value: T, _ op: ReduceOp, label: String) throws -> T {
        var v = value
        try allReduce(&v, count: 1, op, label: label)
        return v
    }

    public func broadcast<T: CollectiveElement>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int = 0,
                                                label: String) throws {
        try startBroadcast(buffer, count: count, root: root, label: label).wait()
    }

    public func broadcast<T: CollectiveElement>(_ buffer: Buffer<T>, root: Int = 0, label: String) throws {
        try broadcast(buffer.pointer, count: buffer.count, root: root, label: label)
    }

    public func barrier(label: String) throws { try startBarrier(label: label).wait() }

    /// Every rank's `value`, in rank order, on every rank.
    public func allGather<T: CollectiveElement & Numeric>(_ value: T, label: String) throws -> [T] {
        var send = value
        var all = [T](repeating: 0, count: size)
        try all.withUnsafeMutableBufferPointer { out in
            try startAllGather(&send, count: 1, into: out.baseAddress!, label: label).wait()
        }
        return all
    }

    /// Every rank's text on `root`, in rank order (empty elsewhere). For short texts (a
    /// configuration, a host name): each is padded to the longest.
    public func gather(_ text: String, root: Int = 0, label: String) throws -> [String] {
        var bytes = Array(text.utf8)
        let lengths = try allGather(Int64(bytes.count), label: label + " (lengths)")
        let width = max(1, Int(lengths.max()!))
        bytes += [UInt8](repeating: 0, count: width - bytes.count)
        var all = [UInt8](repeating: 0, count: width * (rank == root ? size : 1))
        try bytes.withUnsafeBufferPointer { send in
            try all.withUnsafeMutableBufferPointer { out in
                try startGather(send.baseAddress!, count: width, into: out.baseAddress!, root: root, label: label).wait()
            }
        }
        guard rank == root else { return [] }
        return (0..<size).map { r in
            String(decoding: all[(r * width)..<(r * width + Int(lengths[r]))], as: UTF8.self)
        }
    }

    /// Root's `text` on every rank (what the others pass is ignored).
    public func broadcast(_ text: String, root: Int = 0, label: String) throws -> String {
        var bytes = Array(text.utf8)
        var length = Int64(bytes.count)
        try broadcast(&length, count: 1, root: root, label: label + " (length)")
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(length)) }
        if length > 0 {
            try bytes.withUnsafeMutableBufferPointer { try broadcast($0.baseAddress!, count: Int(length), root: root, label: label) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
