import Foundation
import TestSupport
import Training
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Real MPI jobs: `mpirun` started as a subprocess on the built `elle` (MPI_Init runs once per
/// process, so the test runner itself never initializes MPI). Models are tiny and runs short.
final class MPIJobTests: XCTestCase {
    /// The repository checkout these tests belong to.
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    func mpirun(_ ranks: Int, _ arguments: [String]) -> [String] { MPIJob.command(ranks: ranks, elleExecutable, arguments) }

    func tinyRun(out: String, steps: Int) -> [String] { JobRecords.tinyRun(out: out, steps: steps) }

    func runMPI(_ ranks: Int, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try MPIJob.run(ranks: ranks, elleExecutable, arguments)
    }

    // MARK: failures

    /// A long tiny run whose ranks (and their pids) are listed at start; returns `rank`'s pid.
    func startLongRun(_ out: String, extra: [String] = [], rank: Int = 1) throws -> (LiveProcess, pid: pid_t) {
        var arguments = tinyRun(out: out, steps: 1_000_000)
        arguments[arguments.firstIndex(of: "--log-every")! + 1] = "50"
        let job = try LiveProcess("/usr/bin/env", mpirun(2, arguments + ["--eval-every", "0"] + extra), environment: MPIJob.environment)
        let pid = try XCTUnwrap(job.waitFor("rank \(rank): .* pid (\\d+)", timeout: 60), job.output)
        XCTAssertNotNil(job.waitFor(#"step +50/"#, timeout: 60), "training did not start: \(job.output)")
        return (job, pid_t(pid)!)
    }

    /// Must show: kill -9 of one rank mid-run ends the job non-zero within 60 s, naming the rank.
    func testKilledRankEndsTheJobNamingIt() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let (job, rank1) = try startLongRun(out)
        defer { job.stop() }
        let before = job.output.utf8.count
        let start = Date()
        XCTAssertEqual(kill(rank1, SIGKILL), 0)
        XCTAssertTrue(job.waitForExit(timeout: 90), "the job did not end: \(job.output)")
        let seconds = Date().timeIntervalSince(start)
        let after = String(job.output.utf8.dropFirst(before))!
        XCTAssertLessThan(seconds, 60)
        XCTAssertNotEqual(job.status, 0)
        XCTAssertTrue(after.contains("rank 1"), after)
        print(String(format: "kill -9 of rank 1: mpirun exited with status %d after %.1f s", job.status, seconds))
    }

    /// SIGSTOP of rank 1 in a long run with a 20 s watchdog (and `extra`): the job must end
    /// within 60 s, not before the watchdog could fire, non-zero, rank 0's watchdog naming rank 1.
    /// Returns the job's status, the seconds it took and rank 0's watchdog line.
    func stopRankOneAndExpectTheWatchdog(extra: [String] = []) throws -> (status: Int32, seconds: Double, line: String) {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let (job, rank1) = try startLongRun(out, extra: ["--watchdog", "20"] + extra)
        defer {
            kill(rank1, SIGKILL)
            job.stop()
        }
        let before = job.output.utf8.count
        let start = Date()
        XCTAssertEqual(kill(rank1, SIGSTOP), 0)
        XCTAssertTrue(job.waitForExit(timeout: 90), "the job did not end: \(job.output)")
        let seconds = Date().timeIntervalSince(start)
        let after = String(job.output.utf8.dropFirst(before))!
        XCTAssertLessThan(seconds, 60)
        XCTAssertGreaterThanOrEqual(seconds, 19, "ended before the watchdog could have fired: \(after)")
        XCTAssertNotEqual(job.status, 0)
        XCTAssertTrue(after.contains("watchdog on rank 0"), after)
        XCTAssertTrue(after.contains("rank 1 has not reached it") || after.contains("rank 1 reached it but has been silent"), after)
        let line = after.split(separator: "\n").first { $0.contains("watchdog on rank") } ?? ""
        return (job.status, seconds, String(line))
    }

    /// Must show: SIGSTOP of one rank with a 20 s watchdog ends the job within 60 s, naming it.
    func testStoppedRankIsNamedByTheWatchdog() throws {
        let (status, seconds, line) = try stopRankOneAndExpectTheWatchdog()
        print(String(format: "SIGSTOP of rank 1, --watchdog 20: job ended with status %d after %.1f s: ", status, seconds) + line)
    }

    /// The same under ZeRO-1, where rank 0 may be waiting for rank 1's shard of the parameters
    /// inside a forward pass (`ShardArrivals`) when rank 1 stops: the failure ends the update
    /// right after that forward pass, so the job still ends within 60 s, naming rank 1.
    func testStoppedRankIsNamedByTheWatchdogUnderZero() throws {
        let (status, seconds, line) = try stopRankOneAndExpectTheWatchdog(extra: ["--zero", "1"])
        print(String(format: "ZeRO-1, SIGSTOP of rank 1, --watchdog 20: job ended with status %d after %.1f s: ", status, seconds) + line)
    }

    /// When rank 0 is the one that stops, rank 1's watchdog names it (here after 5 s).
    func testStoppedRankZeroIsNamedByAnotherRank() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let (job, rank0) = try startLongRun(out, extra: ["--watchdog", "5"], rank: 0)
        defer {
            kill(rank0, SIGKILL)
            job.stop()
        }
        let before = job.output.utf8.count
        let start = Date()
        XCTAssertEqual(kill(rank0, SIGSTOP), 0)
        XCTAssertTrue(job.waitForExit(timeout: 60), "the job did not end: \(job.output)")
        let seconds = Date().timeIntervalSince(start)
        let after = String(job.output.utf8.dropFirst(before))!
        XCTAssertLessThan(seconds, 30)
        XCTAssertNotEqual(job.status, 0)
        XCTAssertTrue(after.contains("watchdog on rank 1"), after)
        XCTAssertTrue(after.contains("rank 0 has not reached it") || after.contains("rank 0 reached it but has been silent"), after)
    }

    /// Ranks launched with different settings (or data) are stopped before training, with an
    /// error naming the rank, the field and both values.
    func testMismatchedConfigurationNamesRankAndField() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = tinyRun(out: out, steps: 2)
        let result = try runProcess("/usr/bin/env", ["mpirun", "--allow-run-as-root", "-n", "1", elleExecutable] + run
                                    + [":", "-n", "1", elleExecutable] + run + ["--batch", "2"], environment: MPIJob.environment)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("rank 1 has options.batch = 2 where rank 0 has options.batch = 4"), result.stderr)
        XCTAssertFalse(result.stdout.contains("step "), "training started: \(result.stdout)")
        let hamlet = sampleDataPath() + "/shakespeare_hamlet.txt"
        let data = try runProcess("/usr/bin/env", ["mpirun", "--allow-run-as-root", "-n", "1", elleExecutable] + run
                                  + [":", "-n", "1", elleExecutable] + run + ["--data", hamlet], environment: MPIJob.environment)
        XCTAssertNotEqual(data.status, 0)
        XCTAssertTrue(data.stderr.contains("rank 1 has data.trainTokens = "), data.stderr)
    }

    // MARK: launch

    /// `elle mpi-check` passes on 2 and 3 ranks (all-reduce of each type and operation split into
    /// chunks, broadcast, gather, all-gather, barrier, and the replica checks naming a rank).
    func testMPICheckOnTwoAndThreeRanks() throws {
        for ranks in [2, 3] {
            let result = try runMPI(ranks, ["mpi-check", "--chunk-elements", "333"])
            XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
            XCTAssertTrue(result.stdout.contains("mpi-check: all checks passed on \(ranks) rank(s)"), result.stdout)
            XCTAssertFalse(result.stdout.contains("FAILED"), result.stdout)
        }
    }

    /// cluster/launch.sh turns binding off, passes the thread count to every rank and runs a job.
    func testLaunchWrapper() throws {
        let script = Self.repository + "/cluster/launch.sh"
        let dry = try runProcess("/bin/bash", [script, "-n", "2", "--threads", "1", "--dry-run", "--", elleExecutable, "mpi-check"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("--bind-to none"), dry.stdout)
        XCTAssertTrue(dry.stdout.contains("OPENBLAS_NUM_THREADS=1"), dry.stdout)
        XCTAssertTrue(dry.stdout.contains("--mca odls_base_sigkill_timeout 30"), dry.stdout)
        let run = try runProcess("/bin/bash", [script, "-n", "2", "--threads", "1", "--", elleExecutable, "mpi-check"])
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        XCTAssertTrue(run.stdout.contains("all checks passed on 2 rank(s)"), run.stdout)
        let bad = try runProcess("/bin/bash", [script, "-n", "0", "--", elleExecutable, "mpi-check"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("-n must be a positive number"), bad.stderr)
    }

    /// Must show: two network namespaces joined by a veth pair, one rank in each, Open MPI over
    /// TCP: a few updates equal the single-process run bit for bit. Skipped (with the reason)
    /// where namespaces are not permitted.
    func testTwoHostsInNetworkNamespaces() throws {
        let result = try runProcess("/bin/bash", [Self.repository + "/cluster/netns-test.sh", elleExecutable])
        if result.status == 77 { throw XCTSkip(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("netns-test: PASS"), result.stdout)
        print(result.stdout)
    }
}
