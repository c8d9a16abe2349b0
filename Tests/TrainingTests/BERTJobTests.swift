import Foundation
import TestSupport
import Training
import XCTest

/// BERT under `mpirun` (a subprocess on the built `elle`): masks are keyed by (seed, update,
/// global micro-batch), so 2 ranks x 1 micro-batch (gradients all-reduced in small buckets during
/// backward) mask, drop and update exactly like 1 rank x 2, with ZeRO-1 too.
final class BERTJobTests: XCTestCase {
    func testTwoRanksMatchOneRankWithTwoMicroBatchesBitForBit() throws {
        let folder = temporaryFolder("elle-bert-mpi")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/prepared"
        let sampleRoot = (sampleDataPath() as NSString).deletingLastPathComponent
        let prepared = try runProcess(elleExecutable, ["data", "prepare", "--raw", sampleRoot, "--out", data,
                                                       "--tokenizer", "train:600", "--domains", "literature", "--threads", "2"])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        func run(_ out: String, accumulation: Int) -> [String] {
            ["train", "--model", "bert", "--data", data, "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
             "--seq", "32", "--batch", "4", "--steps", "12", "--log-every", "1", "--eval-every", "6", "--threads", "1",
             "--seed", "3", "--accumulation", "\(accumulation)", "--check-replicas-every", "4"]
        }
        let single = folder + "/single", multi = folder + "/multi"
        let a = try runProcess(elleExecutable, run(single, accumulation: 2))
        XCTAssertEqual(a.status, 0, a.stderr)
        // Small buckets: the head's and every block's all-reduce starts during backward (overlap).
        let b = try MPIJob.run(ranks: 2, elleExecutable, run(multi, accumulation: 1) + ["--bucket-mb", "0.002"])
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        XCTAssertTrue(b.stdout.contains("x 2 rank(s)") && b.stdout.contains("model bert"), b.stdout)

        func records(_ folder: String) throws -> [String] {
            try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map { line in
                var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                for key in ["tokens_per_second", "mfu"] { record[key] = nil }
                return String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self)
            }
        }
        let expected = try records(single)
        XCTAssertEqual(expected.filter { $0.contains("\"loss\"") }.count, 12)
        XCTAssertEqual(expected.filter { $0.contains("\"valid_loss\"") }.count, 2)
        XCTAssertEqual(try records(multi), expected)
        let x = try Checkpoint.read(from: single + "/step-00000012.ckpt"), y = try Checkpoint.read(from: multi + "/step-00000012.ckpt")
        for name in ["parameters", "adam.m", "adam.v"] {
            let p = try XCTUnwrap(x.tensor(name)), q = try XCTUnwrap(y.tensor(name))
            XCTAssertTrue(p.count == q.count && bitIdentical(p.pointer, q.pointer, p.count), "\(name) differs")
        }
        XCTAssertEqual(y.state.options.maskedLM, x.state.options.maskedLM)
        XCTAssertNotNil(x.state.options.maskedLM)

        // ZeRO-1: the parameter all-gather overlaps the next forward pass, which waits for the
        // embeddings, each block and the head as it reaches them; the same records and parameters.
        let zero = folder + "/zero"
        let c = try MPIJob.run(ranks: 2, elleExecutable, run(zero, accumulation: 1) + ["--zero", "1"])
        XCTAssertEqual(c.status, 0, c.stdout + c.stderr)
        XCTAssertEqual(try records(zero), expected)
        let z = try XCTUnwrap(try Checkpoint.read(from: zero + "/step-00000012.ckpt").tensor("parameters"))
        let p = try XCTUnwrap(x.tensor("parameters"))
        XCTAssertTrue(bitIdentical(p.pointer, z.pointer, p.count), "ZeRO-1 parameters differ")
    }
}
