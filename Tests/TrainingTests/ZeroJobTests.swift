import Foundation
import TestSupport
import Training
import XCTest

/// ZeRO-1 end to end (`--zero 1`, docs/SCALING.md "ZeRO-1"): real `mpirun` jobs of the built
/// `elle` against plain data parallelism on the same ranks. The tiny model has 3 blocks of
/// `reductionBlock` floats, so 2 ranks own 2 and 1 blocks and 4 ranks 1, 1, a part and nothing:
/// pieces cut at shard boundaries, short and empty shards are all exercised.
final class ZeroJobTests: XCTestCase {
    func runMPI(_ ranks: Int, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try MPIJob.run(ranks: ranks, elleExecutable, arguments)
    }

    /// The moments of checkpoint `path`: its own tensors, or its shard files put together.
    func moments(_ path: String) throws -> (m: [Float], v: [Float]) {
        let checkpoint = try Checkpoint.read(from: path)
        guard let shards = checkpoint.state.momentShards else {
            let m = try XCTUnwrap(checkpoint.tensor("adam.m")), v = try XCTUnwrap(checkpoint.tensor("adam.v"))
            return (Array(UnsafeBufferPointer(start: m.pointer, count: m.count)), Array(UnsafeBufferPointer(start: v.pointer, count: v.count)))
        }
        XCTAssertNil(checkpoint.tensor("adam.m"))
        var m: [Float] = [], v: [Float] = []
        for rank in 0..<shards {
            let shard = try Checkpoint.read(from: Trainer.momentShardPath(path, rank: rank, of: shards))
            let a = try XCTUnwrap(shard.tensor("adam.m")), b = try XCTUnwrap(shard.tensor("adam.v"))
            XCTAssertEqual(shard.state.step, checkpoint.state.step)
            m += UnsafeBufferPointer(start: a.pointer, count: a.count)
            v += UnsafeBufferPointer(start: b.pointer, count: b.count)
        }
        return (m, v)
    }

    func assertSameTensors(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try Checkpoint.read(from: a), y = try Checkpoint.read(from: b)
        let p = try XCTUnwrap(x.tensor("parameters")), q = try XCTUnwrap(y.tensor("parameters"))
        XCTAssertEqual(p.count, q.count, file: file, line: line)
        XCTAssertTrue(bitIdentical(p.pointer, q.pointer, p.count), "parameters differ", file: file, line: line)
        let (m1, v1) = try moments(a), (m2, v2) = try moments(b)
        XCTAssertEqual(m1.count, p.count, file: file, line: line)
        XCTAssertEqual(m1.map(\.bitPattern), m2.map(\.bitPattern), "adam.m differs", file: file, line: line)
        XCTAssertEqual(v1.map(\.bitPattern), v2.map(\.bitPattern), "adam.v differs", file: file, line: line)
    }

    /// Must show 1: 2 ranks with ZeRO-1 against 2 ranks of plain data parallelism over 20 updates
    /// with dropout, a growth with carried moments and a masked ramp at update 8, the ZeRO run
    /// stopped at 12 (mid-ramp) and resumed: every loss, norm and validation loss, the final
    /// parameters and both moments (the shards put together) bit-identical.
    func testZeroMatchesDataParallelThroughGrowthAndResume() throws {
        let plain = temporaryFolder(), zero = temporaryFolder()
        defer { for f in [plain, zero] { try? FileManager.default.removeItem(atPath: f) } }
        let run = JobRecords.tinyRun(out: plain, steps: 20) + ["--eval-every", "5", "--checkpoint-every", "10",
            "--grow-at", "8", "--grow-to", "3/64/4", "--grow-moments", "carry", "--grow-ramp", "4"]
        let a = try runMPI(2, run)
        XCTAssertEqual(a.status, 0, a.stdout + a.stderr)
        let zeroRun = JobRecords.tinyRun(out: zero, steps: 20) + Array(run.dropFirst(JobRecords.tinyRun(out: plain, steps: 20).count))
        let b = try runMPI(2, zeroRun + ["--zero", "1", "--stop-after", "12"])
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: zero + "/step-00000012.ckpt.adam-1-of-2"))
        let c = try runMPI(2, ["train", "--out", zero, "--resume", "--threads", "1"])
        XCTAssertEqual(c.status, 0, c.stdout + c.stderr)
        XCTAssertTrue(c.stdout.contains("resumed \(zero)/step-00000012.ckpt at step 12 of 20"), c.stdout)

        let expected = try JobRecords.metrics(plain)
        XCTAssertEqual(expected.filter { $0.contains("\"loss\"") }.count, 20)
        XCTAssertEqual(try JobRecords.metrics(zero), expected)
        XCTAssertTrue(a.stdout.contains("Adam moments carried (step 8)"), a.stdout)
        let hash = try XCTUnwrap(JobRecords.finalHash(a.stdout))
        XCTAssertEqual(JobRecords.finalHash(c.stdout), hash)
        try assertSameTensors(plain + "/step-00000020.ckpt", zero + "/step-00000020.ckpt")
        print("ZeRO-1 vs plain data parallelism, 2 ranks, growth at 8, stop/resume at 12: \(expected.count) records equal, parameters \(hash), moments equal")
    }

    /// Under the bf16 step, ZeRO-1's next forward pass converts the parameters for its products
    /// part by part as they arrive (plain data parallelism: AdamW writes the copy whole): every
    /// record and the final parameters are the same bits, with dropout and 2 micro-batches.
    func testZeroMatchesDataParallelUnderTheBF16Step() throws {
        let plain = temporaryFolder(), zero = temporaryFolder()
        defer { for f in [plain, zero] { try? FileManager.default.removeItem(atPath: f) } }
        let extra = ["--precision", "bf16", "--dropout", "0.1", "--accumulation", "2", "--eval-every", "5"]
        let a = try runMPI(2, JobRecords.tinyRun(out: plain, steps: 10) + extra)
        XCTAssertEqual(a.status, 0, a.stdout + a.stderr)
        let b = try runMPI(2, JobRecords.tinyRun(out: zero, steps: 10) + extra + ["--zero", "1"])
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        let expected = try JobRecords.metrics(plain)
        XCTAssertEqual(expected.filter { $0.contains("\"loss\"") }.count, 10)
        XCTAssertEqual(try JobRecords.metrics(zero), expected)
        let hash = try XCTUnwrap(JobRecords.finalHash(a.stdout))
        XCTAssertEqual(JobRecords.finalHash(b.stdout), hash)
    }

    /// Must show 1: a sharded checkpoint of 2 ranks x 2 micro-batches resumes on 4 ranks (ZeRO,
    /// 4 shards then) and on 1 rank (plain: the shards put together) exactly like the
    /// uninterrupted plain run; a missing shard ends the resume with an error naming the file.
    func testShardedCheckpointResumesOnOneAndFourRanks() throws {
        let plain = temporaryFolder(), zero = temporaryFolder(), four = temporaryFolder(), one = temporaryFolder()
        defer { for f in [plain, zero, four, one] { try? FileManager.default.removeItem(atPath: f) } }
        let run = ["--eval-every", "10", "--checkpoint-every", "10", "--accumulation", "2"]
        let a = try runMPI(2, JobRecords.tinyRun(out: plain, steps: 20) + run)
        XCTAssertEqual(a.status, 0, a.stdout + a.stderr)
        let b = try runMPI(2, JobRecords.tinyRun(out: zero, steps: 20) + run + ["--zero", "1", "--stop-after", "10"])
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        for copy in [four, one] {
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: zero, toPath: copy)
        }
        let c = try runMPI(4, ["train", "--out", four, "--resume", "--threads", "1"])
        XCTAssertEqual(c.status, 0, c.stdout + c.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: four + "/step-00000020.ckpt.adam-3-of-4"))
        let d = try runProcess(elleExecutable, ["train", "--out", one, "--resume", "--threads", "1", "--zero", "0"])
        XCTAssertEqual(d.status, 0, d.stdout + d.stderr)

        let expected = try JobRecords.metrics(plain)
        let hash = try XCTUnwrap(JobRecords.finalHash(a.stdout))
        for (folder, log) in [(four, c.stdout), (one, d.stdout)] {
            XCTAssertEqual(try JobRecords.metrics(folder), expected, folder)
            XCTAssertEqual(JobRecords.finalHash(log), hash, folder)
            try assertSameTensors(plain + "/step-00000020.ckpt", folder + "/step-00000020.ckpt")
        }

        // A shard lost: the resume names the file instead of training on partial moments.
        let missing = Trainer.momentShardPath(zero + "/step-00000010.ckpt", rank: 1, of: 2)
        try FileManager.default.removeItem(atPath: missing)
        let e = try runMPI(2, ["train", "--out", zero, "--resume", "--threads", "1"])
        XCTAssertNotEqual(e.status, 0)
        XCTAssertTrue(e.stderr.contains(missing), e.stdout + e.stderr)
        print("2x2 ZeRO checkpoint resumed on 4 ranks (4 shards) and on 1 rank: records and parameters \(hash) equal to the plain run; missing shard named")
    }
    /// The bf16 exchange: deterministic (the same run twice gives the same records and
    /// parameters), the replicas stay identical on 2 ranks (MPI's all-reduce with the bf16 sum),
    /// on 3 (all-to-all and all-gather) and under ZeRO-1, and it trains like the float32
    /// exchange (validation loss within 1% after 20 updates) without being bit-identical to it.
    func testBF16ExchangeIsDeterministicAndCloseToFloat32() throws {
        let folders = (0..<5).map { _ in temporaryFolder() }
        defer { for f in folders { try? FileManager.default.removeItem(atPath: f) } }
        let run = ["--eval-every", "20", "--accumulation", "1"]
        func train(_ ranks: Int, _ folder: String, _ flags: [String]) throws -> String {
            let result = try runMPI(ranks, JobRecords.tinyRun(out: folder, steps: 20) + run + flags)
            XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
            XCTAssertTrue(result.stdout.contains("identical on \(ranks) rank(s)"), result.stdout)
            return try XCTUnwrap(JobRecords.finalHash(result.stdout))
        }
        let exact = try train(2, folders[0], [])
        let once = try train(2, folders[1], ["--allreduce-dtype", "bf16"])
        let again = try train(2, folders[2], ["--allreduce-dtype", "bf16"])
        XCTAssertEqual(once, again)
        XCTAssertEqual(try JobRecords.metrics(folders[1]), try JobRecords.metrics(folders[2]))
        XCTAssertNotEqual(once, exact, "the bf16 exchange rounds: it cannot give the float32 bits")
        _ = try train(3, folders[3], ["--allreduce-dtype", "bf16"])
        _ = try train(2, folders[4], ["--allreduce-dtype", "bf16", "--zero", "1"])
        func validLoss(_ folder: String) throws -> Double {
            let text = try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8)
            let records = try text.split(separator: "\n").compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            return try XCTUnwrap(records.compactMap { $0["valid_loss"] as? Double }.last)
        }
        let reference = try validLoss(folders[0])
        for folder in folders.dropFirst() {
            let loss = try validLoss(folder)
            XCTAssertLessThan(abs(loss / reference - 1), 0.01, "\(folder): \(loss) against \(reference)")
        }
        print("bf16 exchange: deterministic, replicas identical on 2 and 3 ranks and under ZeRO-1, final validation loss within 1% of float32's \(reference)")
    }

    /// Wrong values of the new options are refused with the field named.
    func testZeroAndExchangeOptionsAreChecked() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let zero = try runProcess(elleExecutable, JobRecords.tinyRun(out: folder, steps: 2) + ["--zero", "2"])
        XCTAssertNotEqual(zero.status, 0)
        XCTAssertTrue(zero.stderr.contains("zero") && zero.stderr.contains("must be 0 (off) or 1"), zero.stderr)
        let dtype = try runProcess(elleExecutable, JobRecords.tinyRun(out: folder, steps: 2) + ["--allreduce-dtype", "fp16"])
        XCTAssertNotEqual(dtype.status, 0)
        XCTAssertTrue(dtype.stderr.contains("allreduce-dtype"), dtype.stderr)
    }
}
