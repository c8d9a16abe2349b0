import CMPI
import Foundation

/// Waits for MPI operations with a deadline, and names the rank that is missing when one passes.
///
/// Open MPI's blocking collectives spin inside the library until every rank arrives, so a rank
/// that stopped (SIGSTOP, a hung file system, a deadlock) would hang the job silently. Here every
/// collective is non-blocking and waited for by polling `MPI_Test`; past `timeout` seconds the
/// wait throws `WatchdogTimeout` and the caller ends the job.
///
/// To name the culprit, ranks that have waited `heartbeatInterval` send small heartbeats (the
/// number of the collective they wait in): every rank to rank 0, rank 0 to every rank. Only slow
/// collectives send any. When rank 0's deadline passes it names each rank it has not heard from
/// in this collective, or whose heartbeats stopped (a rank stopped inside it). Another rank whose
/// deadline passes names rank 0 if rank 0 is silent; if rank 0 is alive and waiting too, it waits
/// until rank 0's deadline (plus a grace period) so that rank 0 reports first.
public final class Watchdog {
    /// Longer than any checkpoint write, evaluation or growth pause.
    public static let defaultTimeout: Double = 600
    /// How long a wait goes on after a stop signal before it gives up on its peers.
    public static let stopGrace: Double = 3
    static let tag: Int32 = 0x4E11

    public let timeout: Double
    let heartbeatInterval: Double
    let rank: Int
    let size: Int
    /// Collectives started so far; every rank numbers them alike.
    private(set) var sequence: Int64 = 0

    /// Ranks heard from: rank 0 listens to all others, the others to rank 0.
    private let peers: [Int]
    private let inbox: UnsafeMutablePointer<Int64>
    private var receives: [OpaquePointer?]
    /// Per peer: the newest collective it said it waits in, when it said so last, and when it
    /// first said so.
    private var peerSequence: [Int64]
    private var lastHeard: [Double]
    private var firstHeard: [Double]
    /// Heartbeats in flight (each needs its payload alive until sent).
    private let outbox: UnsafeMutablePointer<Int64>
    private var sends: [OpaquePointer?]
    private var closed = false

    init(rank: Int, size: Int, timeout: Double) throws {
        precondition(timeout > 0, "watchdog timeout must be positive")
        self.rank = rank
        self.size = size
        self.timeout = timeout
        heartbeatInterval = min(timeout / 5, 5)
        peers = rank == 0 ? Array(1..<max(1, size)) : [0]
        inbox = .allocate(capacity: max(1, peers.count))
        receives = Array(repeating: nil, count: peers.count)
        peerSequence = Array(repeating: 0, count: peers.count)
        lastHeard = Array(repeating: -.infinity, count: peers.count)
        firstHeard = Array(repeating: -.infinity, count: peers.count)
        outbox = .allocate(capacity: 4 * max(1, peers.count))
        sends = Array(repeating: nil, count: 4 * max(1, peers.count))
        for i in peers.indices { try postReceive(i) }
    }

    deinit {
        inbox.deallocate()
        outbox.deallocate()
    }

    /// Numbers a collective about to start.
    func begin() -> Int64 {
        sequence += 1
        return sequence
    }

    /// Polls `request` until it completes; past the deadline throws `WatchdogTimeout` naming
    /// the ranks that are missing.
    func wait(for request: MPIRequest, label: String) throws {
        if try request.test() { return }
        let start = Watchdog.now()
        var deadline = start + timeout
        var extended = false
        var nextHeartbeat = start + heartbeatInterval
        var nextListen = start
        var stopSeen: Double?
        while true {
            if try request.test() { return }
            let now = Watchdog.now()
            if StopSignal.requested {
                // A stop signal while waiting: when every rank was signalled (pre-emption) the
                // collective still completes; when it does not within the grace period, a peer
                // is gone (mpirun signals the survivors when a rank dies).
                let seen = stopSeen ?? now
                stopSeen = seen
                if now - seen >= Watchdog.stopGrace {
                    throw CollectiveInterrupted(rank: rank, label: label, waited: now - start)
                }
            }
            if now >= nextListen {
                try listen(now)
                nextListen = now + 0.01
            }
            if now >= nextHeartbeat {
                try sendHeartbeats(request.sequence)
                nextHeartbeat = now + heartbeatInterval
            }
            if now >= deadline {
                if !extended, let rootDeadline = rootWaitsToo(request.sequence) {
                    // Rank 0 is alive in this collective and will name the missing rank itself.
                    extended = true
                    deadline = max(deadline, rootDeadline)
                    continue
                }
                throw WatchdogTimeout(rank: rank, label: label, sequence: request.sequence, waited: now - start,
                                      missing: diagnose(request.sequence, now))
            }
            // Spin for the first 2 ms (collectives of a balanced step finish in that time), then
            // sleep briefly between polls so a long wait does not burn a core.
            let waited = now - start
            if waited > 0.002 { usleep(waited > 0.1 ? 500 : 20) }
        }
    }

    /// Cancels the pending heartbeat receives and releases unfinished sends (before MPI_Finalize).
    func close() {
        if closed { return }
        closed = true
        for i in receives.indices { _ = cmpi_cancel(&receives[i]) }
        for i in sends.indices { _ = cmpi_cancel(&sends[i]) }
    }

    // MARK: heartbeats

    private func postReceive(_ i: Int) throws {
        try MPIError.check(cmpi_irecv(inbox + i, 1, CMPI_INT64, Int32(peers[i]), Watchdog.tag, &receives[i]),
                           "MPI_Irecv (watchdog heartbeat from rank \(peers[i]))")
    }

    /// Records heartbeats that arrived and re-posts their receives.
    private func listen(_ now: Double) throws {
        for i in peers.indices {
            var done: Int32 = 0
            try MPIError.check(cmpi_test(&receives[i], &done), "MPI_Test (watchdog heartbeat from rank \(peers[i]))")
            if done == 0 { continue }
            if inbox[i] > peerSequence[i] {
                peerSequence[i] = inbox[i]
                firstHeard[i] = now
            }
            lastHeard[i] = now
            try postReceive(i)
        }
    }

    private func sendHeartbeats(_ sequence: Int64) throws {
        for i in sends.indices where sends[i] != nil {
            var done: Int32 = 0
            try MPIError.check(cmpi_test(&sends[i], &done), "MPI_Test (watchdog heartbeat)")
        }
        var slot = 0
        for peer in peers {
            // A peer that takes none of its heartbeats is silent itself; skipping it is harmless.
            while slot < sends.count && sends[slot] != nil { slot += 1 }
            if slot == sends.count { return }
            outbox[slot] = sequence
            try MPIError.check(cmpi_isend(outbox + slot, 1, CMPI_INT64, Int32(peer), Watchdog.tag, &sends[slot]),
                               "MPI_Isend (watchdog heartbeat to rank \(peer))")
        }
    }

    // MARK: diagnosis

    /// A rank is present in collective `sequence` if it said it waits there, and said so lately.
    private func isPresent(_ i: Int, _ sequence: Int64, _ now: Double) -> Bool {
        peerSequence[i] >= sequence && now - lastHeard[i] < 3 * heartbeatInterval
    }

    /// On ranks other than 0: the time by which rank 0 will have reported, if rank 0 waits in the
    /// same collective and is alive.
    private func rootWaitsToo(_ sequence: Int64) -> Double? {
        guard rank != 0, isPresent(0, sequence, Watchdog.now()) else { return nil }
        // Rank 0 started waiting before its first heartbeat, so its deadline is earlier than this.
        return firstHeard[0] + timeout + 2 * heartbeatInterval + 5
    }

    private func diagnose(_ sequence: Int64, _ now: Double) -> [MissingRank] {
        peers.indices.compactMap { i in
            if isPresent(i, sequence, now) { return nil }
            if peerSequence[i] >= sequence {
                return MissingRank(rank: peers[i], state: .silentInside(seconds: now - lastHeard[i]))
            }
            return MissingRank(rank: peers[i], state: .notArrived)
        }
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}

/// A rank the watchdog found unresponsive.
public struct MissingRank: Sendable, CustomStringConvertible {
    public enum State: Sendable {
        /// No heartbeat from it in this collective: stopped, hung or still busy before it.
        case notArrived
        /// It entered the collective, then fell silent (stopped or hung inside it).
        case silentInside(seconds: Double)
    }
    public let rank: Int
    public let state: State

    public init(rank: Int, state: State) {
        self.rank = rank
        self.state = state
    }

    public var description: String {
        switch state {
        case .notArrived:
            "rank \(rank) has not reached it (stopped, hung, or still busy before it)"
        case .silentInside(let seconds):
            String(format: "rank %d reached it but has been silent for %.0f s (stopped or hung inside it)", rank, seconds)
        }
    }
}

/// A collective that did not complete within the watchdog's timeout.
/// A rank was told to stop (SIGTERM/SIGINT) while waiting in a collective that did not complete
/// within `Watchdog.stopGrace`: a peer has most likely died and mpirun is ending the job. The
/// training state is still that of the last completed update, so the rank can save it alone.
public struct CollectiveInterrupted: Error, CustomStringConvertible {
    public let rank: Int
    public let label: String
    public let waited: Double

    public var description: String {
        String(format: "rank %d was stopped while waiting %.1f s in %@, which did not complete: a peer rank has stopped", rank, waited, label)
    }
}

public struct WatchdogTimeout: Error, CustomStringConvertible {
    public let rank: Int
    public let label: String
    public let sequence: Int64
    public let waited: Double
    public let missing: [MissingRank]

    public init(rank: Int, label: String, sequence: Int64, waited: Double, missing: [MissingRank]) {
        self.rank = rank
        self.label = label
        self.sequence = sequence
        self.waited = waited
        self.missing = missing
    }

    public var description: String {
        let who: String
        if missing.isEmpty {
            who = rank == 0
                ? "every rank is alive and waiting in it, so MPI itself is stuck (network or MPI library)"
                : "rank 0 is alive and waiting in it too but did not report which rank is missing"
        } else {
            who = missing.map(\.description).joined(separator: "; ")
        }
        return "watchdog on rank \(rank): \(label) (collective #\(sequence)) did not complete within "
            + String(format: "%.0f s: ", waited) + who
    }
}
