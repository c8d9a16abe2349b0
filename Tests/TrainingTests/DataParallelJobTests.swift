import Foundation
import TestSupport
import Training
import XCTest

/// Data parallelism end to end: real `mpirun` jobs of the built `elle` against one process with
/// the same global batch (MPI_Init runs once per process, so the test runner never initializes
/// MPI). Models are tiny and runs short. Growth and overlap under MPI are in
/// GrowthJobTests.swift and OverlapJobTests.swift.
final class DataParallelJobTests: XCTestCase {
    func runMPI(_ ranks: Int, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try MPIJob.run(ranks: ranks, elleExecutable, arguments)
    }
    func tinyRun(out: String, steps: Int) -> [String] { JobRecords.tinyRun(out: out, steps: steps) }
    func metrics(_ folder: String) throws -> [String] { try JobRecords.metrics(folder) }
    func finalHash(_ log: String) -> String? { JobRecords.finalHash(log) }

    // MARK: exactness

    /// Runs `steps` updates on 1 rank with `ranks` micro-batches and on `ranks` ranks with 1
    /// (plus `multiExtra`) and asserts: both succeed, every metrics record and the final
    /// parameter hash are equal, and every rank holds those parameters. `more(single, multi)`
    /// checks the run folders further before they are removed.
    @discardableResult
    func assertRanksMatchOneRank(_ ranks: Int, steps: Int, common: [String], multiExtra: [String] = [],
                                 more: (_ single: String, _ multi: String) throws -> Void = { _, _ in }) throws
        -> (records: [String], hash: String) {
        let single = temporaryFolder(), multi = temporaryFolder()
        defer { for f in [single, multi] { try? FileManager.default.removeItem(atPath: f) } }
        let a = try runProcess(elleExecutable, tinyRun(out: single, steps: steps) + common + ["--accumulation", "\(ranks)"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try runMPI(ranks, tinyRun(out: multi, steps: steps) + common + ["--accumulation", "1"] + multiExtra)
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        XCTAssertTrue(b.stdout.contains("x \(ranks) rank(s)"), b.stdout)

        let expected = try metrics(single)
        XCTAssertEqual(expected.filter { $0.contains("\"loss\"") }.count, steps)
        XCTAssertEqual(try metrics(multi), expected)
        let hash = try XCTUnwrap(finalHash(a.stdout))
        XCTAssertEqual(finalHash(b.stdout), hash)
        XCTAssertTrue(b.stdout.contains("identical on \(ranks) rank(s)"), b.stdout)
        try more(single, multi)
        return (expected, hash)
    }

    /// Must show: 1 rank x 2 micro-batches and 2 ranks x 1 micro-batch, same data, 1 BLAS thread,
    /// dropout on: every loss, gradient norm and validation loss over 20 updates, the final
    /// parameters and both Adam moments are bit-identical, and both ranks hold the same parameters.
    func testTwoRanksMatchOneRankWithTwoMicroBatchesBitForBit() throws {
        let (expected, hash) = try assertRanksMatchOneRank(2, steps: 20, common: ["--eval-every", "10", "--check-replicas-every", "5"]) {
            single, multi in
            let x = try Checkpoint.read(from: single + "/step-00000020.ckpt")
            let y = try Checkpoint.read(from: multi + "/step-00000020.ckpt")
            for name in ["parameters", "adam.m", "adam.v"] {
                let p = try XCTUnwrap(x.tensor(name)), q = try XCTUnwrap(y.tensor(name))
                XCTAssertEqual(p.count, q.count)
                XCTAssertTrue(bitIdentical(p.pointer, q.pointer, p.count), "\(name) differs")
            }
            XCTAssertEqual(y.state.loaders.count, 2)
        }
        XCTAssertEqual(expected.filter { $0.contains("\"valid_loss\"") }.count, 2)
        print("1 rank x 2 micro-batches vs 2 ranks x 1: 20 losses and \(expected.count - 20) validation losses equal, final parameters xxh64 \(hash) on both")
    }

    /// 4 ranks (more than 2: each bucket is an all-to-all of shares, summed by their owners, and
    /// the sums sent point to point, started during backward as soon as the all-to-all is done)
    /// with tiny buckets, so many are in flight at once: every record and the final parameters
    /// equal 1 rank with 4 micro-batches.
    func testFourRanksMatchOneRankWithFourMicroBatchesBitForBit() throws {
        try assertRanksMatchOneRank(4, steps: 10, common: ["--eval-every", "5", "--check-replicas-every", "5"],
                                    multiExtra: ["--bucket-mb", "0.002"])
    }

    // MARK: resume

    /// Must show: a 2-rank run stopped after 4 of 8 updates and resumed on 2 ranks logs the same
    /// losses as an uninterrupted 2-rank run and ends with a byte-identical checkpoint; resuming
    /// it on 3 ranks, which cannot share its 2 micro-batches, is refused with a clear message.
    func testTwoRankResumeMatchesUninterruptedRun() throws {
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let run = ["--eval-every", "4", "--checkpoint-every", "4"]
        let full = try runMPI(2, tinyRun(out: straight, steps: 8) + run)
        XCTAssertEqual(full.status, 0, full.stdout + full.stderr)
        let first = try runMPI(2, tinyRun(out: split, steps: 8) + run + ["--stop-after", "4"])
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let second = try runMPI(2, ["train", "--out", split, "--resume", "--threads", "1"])
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        XCTAssertTrue(second.stdout.contains("resumed \(split)/step-00000004.ckpt at step 4 of 8"), second.stdout)
        let expected = try metrics(straight)
        XCTAssertEqual(expected.filter { $0.contains("\"loss\"") }.count, 8)
        XCTAssertEqual(try metrics(split), expected)
        let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/step-00000008.ckpt"))
        let b = try Data(contentsOf: URL(fileURLWithPath: split + "/step-00000008.ckpt"))
        XCTAssertEqual(a, b, "final checkpoints differ")
        print("2-rank run stopped at 4/8 and resumed on 2 ranks: \(expected.count) metrics records equal, step-00000008.ckpt byte-identical")

        // Another rank count keeps the global batch (ElasticResumeJobTests); 3 ranks cannot share
        // an update of 2 micro-batches, and the refusal says so with the numbers.
        let three = try runMPI(3, ["train", "--out", split, "--resume", "--steps", "10", "--threads", "1"])
        XCTAssertNotEqual(three.status, 0)
        XCTAssertTrue(three.stderr.contains("cannot resume on 3 rank(s): the run's updates have 2 micro-batches (2 rank(s) x 1)"), three.stderr)
    }
}
