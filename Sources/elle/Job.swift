import ArgumentParser
import Communication
import Foundation
import Training

/// Options of a data-parallel job (used when launched by mpirun or srun).
struct ParallelOptions: ParsableArguments {
    @Option(help: "Seconds any collective may wait for the other ranks before the job is ended, naming the rank that stopped responding.")
    var watchdog: Double = Watchdog.defaultTimeout

    func validate() throws {
        if !(watchdog > 0) { throw ValidationError("--watchdog must be a positive number of seconds (got \(watchdog))") }
    }
}

/// How a subcommand runs as one rank of a job.
enum Job {
    /// Runs `body` on this rank and ends the job the right way when anything fails: an error
    /// every rank raised together (`JobError`) is reported once by rank 0 and every rank exits
    /// with status 1; any other error is printed with the rank that hit it and ends the whole
    /// job (MPI_Abort), since the other ranks would wait for this one forever.
    static func run(_ communicator: Communicator, _ body: () throws -> Void) throws {
        do {
            try body()
            // No rank leaves while another still works (rank 0 writing the last checkpoint)
            // without the watchdog looking on.
            try communicator.barrier(label: "end-of-run barrier")
        } catch {
            guard communicator.size > 1 else { throw error }
            if error is LostPeer {
                // A peer is gone and mpirun is ending the job: no more MPI calls (MPI_Abort or
                // MPI_Finalize could wait for the dead rank); say what was saved and leave.
                Runtime.warn("elle: rank \(communicator.rank) of \(communicator.size) (\(communicator.hostName), pid \(getpid())): \(error)")
                Runtime.flush()
                _exit(1)  // no atexit handlers: Open MPI's would wait for the dead rank
            }
            if error is JobError {
                // Rank 0 reports before MPI_Finalize (which waits for every rank), so the message
                // is out before any rank's exit status makes the launcher end the job.
                if communicator.isRoot { Runtime.warn("Error: \(error)") }
                communicator.finalize()
                throw ExitCode.failure
            }
            Runtime.warn("elle: rank \(communicator.rank) of \(communicator.size) (\(communicator.hostName), pid \(getpid())): \(error)")
            Runtime.warn("elle: rank \(communicator.rank) is ending the job (MPI_Abort) so no other rank waits for it")
            communicator.abort(code: 1)
        }
        communicator.finalize()
    }

    /// Rank 0 prints where each rank runs (host, local rank, process id), so an operator can
    /// find the rank an error message names.
    static func printRanks(_ communicator: Communicator) throws {
        guard communicator.size > 1 else { return }
        let mine = "\(communicator.hostName) (local rank \(communicator.localRank) of \(communicator.localSize)), pid \(getpid())"
        let all = try communicator.gather(mine, label: "rank table gather")
        guard communicator.isRoot else { return }
        let hosts = Set(all.map { $0.split(separator: " ").first ?? "" })
        print("job: \(communicator.size) ranks on \(hosts.count) host(s)")
        for (rank, text) in all.enumerated().prefix(64) { print("  rank \(rank): \(text)") }
        if all.count > 64 { print("  ... and \(all.count - 64) more") }
        Runtime.flush()
    }
}
