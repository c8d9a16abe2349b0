import Foundation
import TestSupport
import Training
import XCTest

/// bf16 runs keep the bit-for-bit rules: 2 ranks x 1 micro-batch (1 thread each) equal 1 rank x 2
/// micro-batches (2 threads), for GPT and BERT with dropout: every logged loss, gradient norm and
/// validation loss, the final parameters and both Adam moments; the checkpoint says bf16.
final class MixedPrecisionJobTests: XCTestCase {
    func testTwoRanksMatchOneRankWithTwoMicroBatchesInBF16() throws {
        let folder = temporaryFolder("elle-bf16-mpi")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/prepared"
        try prepareSample(into: data)
        for model in ["gpt", "bert"] {
            func run(_ out: String, accumulation: Int, threads: Int) -> [String] {
                ["train", "--model", model, "--data", data, "--out", out, "--layers", "2", "--width", "64", "--heads", "2",
                 "--seq", "64", "--batch", "4", "--steps", "8", "--log-every", "1", "--eval-every", "4", "--threads", "\(threads)",
                 "--seed", "3", "--accumulation", "\(accumulation)", "--precision", "bf16"]
            }
            let single = folder + "/single-" + model, multi = folder + "/multi-" + model
            let a = try runProcess(elleExecutable, run(single, accumulation: 2, threads: 2))
            XCTAssertEqual(a.status, 0, a.stderr)
            XCTAssertTrue(a.stdout.contains("bf16 products"), a.stdout)
            let b = try MPIJob.run(ranks: 2, elleExecutable, run(multi, accumulation: 1, threads: 1))
            XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
            let expected = try JobRecords.metrics(single)
            XCTAssertEqual(expected.filter { $0.contains("\"valid_loss\"") }.count, 2, "\(model)")
            XCTAssertEqual(try JobRecords.metrics(multi), expected, "\(model)")
            let x = try Checkpoint.read(from: single + "/step-00000008.ckpt"), y = try Checkpoint.read(from: multi + "/step-00000008.ckpt")
            XCTAssertEqual(x.state.options.precision, .bf16)
            XCTAssertEqual(y.state.options.precision, .bf16)
            for name in ["parameters", "adam.m", "adam.v"] {
                let p = try XCTUnwrap(x.tensor(name)), q = try XCTUnwrap(y.tensor(name))
                XCTAssertTrue(p.count == q.count && bitIdentical(p.pointer, q.pointer, p.count), "\(model): \(name) differs")
            }
        }
    }
}
