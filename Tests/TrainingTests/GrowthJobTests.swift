import Foundation
import TestSupport
import Training
import XCTest

/// Growth inside a data-parallel run (`elle train --grow-at`): rank 0 grows and broadcasts, every
/// rank verifies. Real `mpirun` jobs, like the rest of `MPIJobTests`.
extension DataParallelJobTests {
    /// 20 updates of the tiny run, growing 2/32/2 -> 3/64/4 (a copied layer, random maps, noise)
    /// after update 10 with Adam's moments carried; validation and checkpoints every 5 updates.
    func growingRun(out: String) -> [String] {
        tinyRun(out: out, steps: 20) + ["--lr", "3e-3", "--warmup", "5", "--eval-every", "5", "--checkpoint-every", "5",
                                        "--grow-at", "10", "--grow-to", "3/64/4", "--grow-moments", "carry"]
    }

    /// Must show: a 2-rank run with a growth event mid-run ends with identical parameter hashes on
    /// both ranks, and equals the 1-rank x 2-micro-batch run bit for bit (every loss, validation
    /// loss, the grown model's hash, the final parameters and Adam moments); loss stays finite and
    /// falls after the growth.
    func testTwoRankGrowthMatchesOneRankBitForBit() throws {
        let single = temporaryFolder(), multi = temporaryFolder()
        defer { for f in [single, multi] { try? FileManager.default.removeItem(atPath: f) } }
        let a = try runProcess(elleExecutable, growingRun(out: single) + ["--accumulation", "2"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try runMPI(2, growingRun(out: multi) + ["--accumulation", "1"])
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        let grew = try XCTUnwrap(b.stdout.split(separator: "\n").first { $0.contains("| grew ") }, b.stdout)
        XCTAssertTrue(grew.hasPrefix("step     10 | grew gpt L2 D32 H2x16 F128"), String(grew))
        XCTAssertTrue(grew.contains("-> gpt L3 D64 H4x16 F256"), String(grew))
        XCTAssertTrue(grew.contains("on 2 rank(s); Adam moments carried (step 10)"), String(grew))

        let expected = try metrics(single)
        XCTAssertEqual(try metrics(multi), expected)
        XCTAssertEqual(expected.filter { $0.contains("\"grown_to\"") }.count, 1)
        let hash = try XCTUnwrap(finalHash(a.stdout))
        XCTAssertEqual(finalHash(b.stdout), hash)
        XCTAssertTrue(b.stdout.contains("identical on 2 rank(s)"), b.stdout)
        let x = try Checkpoint.read(from: single + "/step-00000020.ckpt")
        let y = try Checkpoint.read(from: multi + "/step-00000020.ckpt")
        XCTAssertEqual(y.config.layers, 3)
        XCTAssertEqual(y.config.width, 64)
        XCTAssertEqual(y.config.layerOrigins?.count, 3)
        XCTAssertEqual(try Checkpoint.read(from: multi + "/step-00000010.ckpt").config.width, 32, "the checkpoint at the growth step is from before it")
        for name in ["parameters", "adam.m", "adam.v"] {
            let p = try XCTUnwrap(x.tensor(name)), q = try XCTUnwrap(y.tensor(name))
            XCTAssertEqual(p.count, y.config.parameterCount)
            XCTAssertEqual(p.count, q.count)
            XCTAssertTrue(bitIdentical(p.pointer, q.pointer, p.count), "\(name) differs")
        }

        // Training goes on: finite losses that fall after the growth.
        let records = try String(contentsOfFile: multi + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let after = records.filter { ($0["step"] as? Int ?? 0) > 10 }.compactMap { $0["loss"] as? Double }
        XCTAssertEqual(after.count, 10)
        XCTAssertTrue(after.allSatisfy(\.isFinite), "\(after)")
        let firstValid = try XCTUnwrap(records.compactMap { $0["valid_loss_after_growth"] as? Double }.first)
        let lastValid = try XCTUnwrap(records.last { ($0["step"] as? Int) == 20 && $0["valid_loss"] != nil }?["valid_loss"] as? Double)
        XCTAssertLessThan(after.suffix(3).reduce(0, +) / 3, after[0])
        XCTAssertLessThan(lastValid, firstValid)
        print(String(format: "2 ranks with a growth after update 10 = 1 rank x 2 micro-batches bit for bit (xxh64 %@); train loss %.3f -> %.3f, valid loss %.3f -> %.3f after the growth",
                     hash, after[0], after.last!, firstValid, lastValid))
    }

    /// A 2-rank run stopped at the growth step (its checkpoint is from before the growth) and
    /// resumed on 2 ranks grows at the right point and ends byte-identical to the uninterrupted run.
    func testTwoRankResumeAcrossGrowth() throws {
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        XCTAssertEqual(try runMPI(2, growingRun(out: straight)).status, 0)
        let first = try runMPI(2, growingRun(out: split) + ["--stop-after", "10"])
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        XCTAssertFalse(first.stdout.contains("| grew "), first.stdout)
        let second = try runMPI(2, ["train", "--out", split, "--resume", "--threads", "1"])
        XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
        XCTAssertTrue(second.stdout.contains("step     10 | grew gpt L2 D32"), second.stdout)
        XCTAssertEqual(try metrics(split), try metrics(straight))
        let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/step-00000020.ckpt"))
        let b = try Data(contentsOf: URL(fileURLWithPath: split + "/step-00000020.ckpt"))
        XCTAssertEqual(a, b, "final checkpoints differ")
    }

    /// `elle bench grow` under mpirun: rank 0 grows, rank 1 receives and verifies; grow,
    /// broadcast and verification are timed apart.
    func testGrowthBenchmarkOnTwoRanks() throws {
        let run = try runMPI(2, ["bench", "grow", "--from", "2/64/2", "--to", "3/128/4", "--vocab", "100", "--context", "16",
                                 "--repeats", "2", "--threads", "1", "--json"])
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        let fields = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], run.stdout)
        XCTAssertEqual(fields["ranks"] as? Int, 2)
        for phase in ["grow", "broadcast", "verify"] {
            XCTAssertGreaterThan(fields["\(phase)_ms_best"] as? Double ?? 0, 0, phase)
        }
        let total = try XCTUnwrap(fields["total_ms_best"] as? Double)
        XCTAssertGreaterThanOrEqual(total, try XCTUnwrap(fields["grow_ms_best"] as? Double))
        XCTAssertEqual((fields["xxh64"] as? String)?.count, 16)
    }
}
