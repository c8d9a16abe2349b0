import CMPI
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// The process group a run trains in. `SingleProcess` is the debug case (one rank, collectives
/// return at once); `MPICommunicator` is the same interface over MPI, so one code path serves a
/// plain `elle train` and `mpirun -n N elle train`.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Ends the process group cleanly.
    func finalize()
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }
}

/// One process, no MPI.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func finalize() {}
}

public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let message: String
    public var description: String { "MPI \(call) failed (code \(code)): \(message)" }
}

/// The world communicator of an MPI job.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    private var finalized = false

    /// Initializes MPI (once per process).
    public init() throws {
        try MPICommunicator.check(cmpi_init(), "MPI_Init_thread")
        var r: Int32 = 0, s: Int32 = 0
        try MPICommunicator.check(cmpi_rank(&r), "MPI_Comm_rank")
        try MPICommunicator.check(cmpi_size(&s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
    }

    public func finalize() {
        if finalized { return }
        finalized = true
        _ = cmpi_finalize()
    }

    static func check(_ code: Int32, _ call: String) throws {
        if code == 0 { return }
        var buffer = [CChar](repeating: 0, count: 512)
        cmpi_error_string(code, &buffer, Int32(buffer.count))
        throw MPIError(call: call, code: code, message: String(cString: buffer))
    }

    /// True when this process was started by an MPI launcher (mpirun, srun): Open MPI, PMIx and
    /// Slurm's PMI export one of these variables to every rank.
    public static var launchedByMPI: Bool {
        let names = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        return names.contains { getenv($0) != nil }
    }
}

/// The communicator for this process: MPI when started by a launcher, otherwise single-process
/// (no MPI initialization at all, so debugging needs no MPI runtime).
public func makeCommunicator() throws -> Communicator {
    MPICommunicator.launchedByMPI ? try MPICommunicator() : SingleProcess()
}
