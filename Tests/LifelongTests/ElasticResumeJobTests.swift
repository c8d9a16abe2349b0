import Foundation
import TestSupport
import Training
import XCTest

/// Must show (issue 23): a run resumes on another number of ranks with the same global batch.
/// Every micro-batch's data, dropout and mask seeds and replay slot follow its global index, and
/// gradients are summed in one pairwise tree, so splits aligned to that tree (1, 2, 4 ranks) give
/// the same bits; an unaligned split (3 -> 2) continues with the same data and decisions.
final class ElasticResumeJobTests: XCTestCase {
    func elle(_ ranks: Int, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        ranks == 1 ? try runProcess(elleExecutable, arguments, environment: MPIJob.environment)
            : try MPIJob.run(ranks: ranks, elleExecutable, arguments)
    }

    /// A lifelong run with two growths, replay, prompts and dropout, 4 micro-batches per update:
    /// 1 rank x 4 straight through, against runs started on 2, 1 and 4 ranks, stopped before the
    /// first growth and resumed on 1, 2 and 2 ranks: the same perplexity matrix and parameters.
    func testLifelongRunResumesOnOtherRankCountsBitForBit() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // `accumulation` is per rank of the job that starts the run: 4 on 1 rank, 2 on 2, 1 on 4.
        let plans = [1: try LifelongJobTests.writePlan(accumulation: 4), 2: try LifelongJobTests.writePlan(accumulation: 2),
                     4: try LifelongJobTests.writePlan(accumulation: 1)]
        let reference = try elle(1, ["train", "--config", plans[1]!, "--out", folder + "/straight", "--threads", "1"])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let hash = try XCTUnwrap(JobRecords.finalHash(reference.stdout))
        // perplexity.json's key order varies between processes: compare the matrix itself.
        func matrix(_ run: String) throws -> [[Double]] {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + run + "/perplexity.json")))
            return try XCTUnwrap((json as? [String: Any])?["values"] as? [[Double]])
        }
        let expected = try matrix("/straight")
        XCTAssertEqual(expected.map(\.count), [1, 2, 3])
        for (from, to) in [(2, 1), (1, 2), (4, 2)] {
            let out = folder + "/\(from)-\(to)"
            let first = try elle(from, ["train", "--config", plans[from]!, "--out", out, "--threads", "1", "--stop-after", "3"])
            XCTAssertEqual(first.status, 0, "\(from) -> \(to): " + first.stdout + first.stderr)
            let second = try elle(to, ["train", "--config", plans[from]!, "--out", out, "--threads", "1", "--resume"])
            XCTAssertEqual(second.status, 0, "\(from) -> \(to): " + second.stdout + second.stderr)
            XCTAssertTrue(second.stdout.contains("same global batch: the checkpoint's \(from) rank(s) x \(4 / from) micro-batch(es) of 4 sequences now run as \(to) rank(s) x \(4 / to)"),
                          "\(from) -> \(to): " + second.stdout)
            XCTAssertEqual(JobRecords.finalHash(second.stdout), hash, "\(from) -> \(to)")
            XCTAssertEqual(try matrix("/\(from)-\(to)"), expected, "\(from) -> \(to)")
            print("lifelong run started on \(from) rank(s), resumed on \(to): final parameters xxh64 \(hash), same as 1 rank x 4")
        }
    }

    /// An unaligned split: 6 micro-batches per update on 3 ranks x 2, stopped after 10 updates and
    /// resumed on 2 ranks x 3, against 1 rank x 6: the same data and dropout, summed in another
    /// order, so the parameters after 20 updates agree to float32 rounding (<= 1e-6 relative).
    func testUnalignedSplitContinuesWithinRounding() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func run(_ out: String, accumulation: Int) -> [String] {
            JobRecords.tinyRun(out: folder + out, steps: 20) + ["--accumulation", "\(accumulation)", "--eval-every", "0"]
        }
        XCTAssertEqual(try elle(1, run("/straight", accumulation: 6)).status, 0)
        let first = try elle(3, run("/split", accumulation: 2) + ["--stop-after", "10"])
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let second = try elle(2, ["train", "--out", folder + "/split", "--resume", "--threads", "1"])
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        XCTAssertTrue(second.stdout.contains("3 rank(s) x 2 micro-batch(es) of 4 sequences now run as 2 rank(s) x 3"), second.stdout)
        let a = try XCTUnwrap(try Checkpoint.read(from: folder + "/straight/step-00000020.ckpt").tensor("parameters"))
        let b = try XCTUnwrap(try Checkpoint.read(from: folder + "/split/step-00000020.ckpt").tensor("parameters"))
        let error = maxRelativeError(b.pointer, Array(UnsafeBufferPointer(start: a.pointer, count: a.count)))
        XCTAssertLessThanOrEqual(error, 1e-6)
        print(String(format: "3 x 2 -> 2 x 3 micro-batches against 1 x 6 after 20 updates: parameters within %.2e relative", error))
    }
}
