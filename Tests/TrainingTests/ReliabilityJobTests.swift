import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// What a job keeps when a rank dies: the survivors save the last completed update, and the
/// run continues from there exactly.
final class ReliabilityJobTests: XCTestCase {
    /// Must show (issue 23): kill -9 of rank 1 in the middle of a 2-rank run. mpirun sends the
    /// surviving rank SIGTERM (and SIGKILL only after `odls_base_sigkill_timeout`, raised here
    /// as the launcher raises it); the survivor, stuck in a collective its peer never finishes,
    /// writes the state of the last completed update and ends naming it. `--resume` from it
    /// ends with the uninterrupted run's parameters, bit for bit.
    func testSurvivorSavesTheLastCompletedUpdateWhenAPeerDies() throws {
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let steps = 1500
        var arguments = JobRecords.tinyRun(out: straight, steps: steps) + ["--eval-every", "0", "--log-every", "10"]
        let full = try MPIJob.run(ranks: 2, elleExecutable, arguments)
        XCTAssertEqual(full.status, 0, full.stdout + full.stderr)
        let hash = try XCTUnwrap(JobRecords.finalHash(full.stdout))

        arguments[arguments.firstIndex(of: straight)!] = split
        let job = try LiveProcess("/usr/bin/env", MPIJob.command(ranks: 2, elleExecutable, arguments,
                                                                 mpirunOptions: ["--mca", "odls_base_sigkill_timeout", "8"]),
                                  environment: MPIJob.environment)
        defer { job.stop() }
        let rank1 = try XCTUnwrap(job.waitFor(#"rank 1: .* pid (\d+)"#, timeout: 60).flatMap { pid_t($0) }, job.output)
        XCTAssertNotNil(job.waitFor(#"step +30/"#, timeout: 60), job.output)
        XCTAssertEqual(kill(rank1, SIGKILL), 0)
        XCTAssertTrue(job.waitForExit(timeout: 60), "the job did not end: \(job.output.suffix(500))")
        XCTAssertNotEqual(job.status, 0)
        let saved = try XCTUnwrap(job.waitFor(#"saved the state after update (\d+) to "#, timeout: 1).flatMap { Int($0) },
                                  "the survivor wrote no checkpoint: \(job.output.suffix(1500))")
        XCTAssertLessThan(saved, steps)
        XCTAssertTrue(job.output.contains(split + String(format: "/step-%08d.ckpt", saved)), job.output)

        let resumed = try MPIJob.run(ranks: 2, elleExecutable, ["train", "--out", split, "--resume", "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stdout + resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains(String(format: "step-%08d.ckpt at step %d", saved, saved)), resumed.stdout)
        XCTAssertEqual(JobRecords.finalHash(resumed.stdout), hash)
        print("kill -9 of rank 1 after update \(saved): rank 0 saved it; resumed run ends at the uninterrupted hash \(hash)")
    }
}
