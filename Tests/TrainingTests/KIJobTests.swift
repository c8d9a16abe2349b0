import Foundation
import TestSupport
import Training
import XCTest

/// Knowledge inheritance through the command line and under `mpirun` (real processes): the
/// teacher runs on every rank's own batches, so 2 ranks x 1 micro-batch equal 1 rank x 2 bit for
/// bit, through a resume; `elle teacher-cache` + `--kd-cache` equal `--teacher --kd-top-k`.
final class KIJobTests: XCTestCase {
    func run(_ arguments: [String]) throws -> String {
        let result = try runProcess(elleExecutable, arguments)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        return result.stdout
    }

    func runMPI(_ ranks: Int, _ arguments: [String]) throws -> String {
        let result = try MPIJob.run(ranks: ranks, elleExecutable, arguments)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        return result.stdout
    }

    /// metrics.jsonl records without timing fields.
    func metrics(_ folder: String) throws -> [String] {
        let text = try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["tokens_per_second", "mfu"] { record[key] = nil }
            return String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    func finalHash(_ log: String) -> String? {
        log.split(separator: "\n").last { $0.hasPrefix("parameters xxh64") }.map { String($0.split(separator: " ")[2].prefix(16)) }
    }

    func student(data: String, out: String, steps: Int) -> [String] {
        ["train", "--data", data, "--out", out, "--layers", "2", "--width", "32", "--heads", "2", "--seq", "32",
         "--batch", "4", "--steps", "\(steps)", "--log-every", "1", "--eval-every", "5", "--eval-batches", "2",
         "--threads", "1", "--seed", "3"]
    }

    func trainTeacher(data: String, out: String) throws {
        _ = try run(["train", "--data", data, "--out", out, "--layers", "1", "--width", "16", "--heads", "2",
                     "--seq", "32", "--batch", "4", "--steps", "10", "--eval-every", "0", "--eval-batches", "1",
                     "--threads", "1", "--seed", "2"])
    }

    /// 1 rank x 2 micro-batches against 2 ranks x 1 under mpirun with a live teacher (linear
    /// a_t over 6 of 10 updates, dropout on), the 2-rank run stopped after update 4 and resumed:
    /// every loss, a_t, cross-entropy, FLOP count and validation loss and the final parameters
    /// are the same bits; teacher FLOPs are counted for both ranks.
    func testTwoRanksWithTeacherMatchOneRankBitForBit() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = sampleDataPath(), teacher = folder + "/teacher", single = folder + "/single", multi = folder + "/multi"
        try trainTeacher(data: data, out: teacher)
        let ki = ["--teacher", teacher, "--kd-steps", "6", "--kd-temperature", "2", "--kd-until", "steps", "--kd-start", "first"]
        let a = try run(student(data: data, out: single, steps: 10) + ki + ["--accumulation", "2"])
        XCTAssertTrue(a.contains("knowledge inheritance: teacher"), a)
        let b1 = try runMPI(2, student(data: data, out: multi, steps: 10) + ki + ["--accumulation", "1", "--stop-after", "4"])
        XCTAssertTrue(b1.contains("x 2 rank(s)"), b1)
        let b2 = try runMPI(2, ["train", "--out", multi, "--resume", "--threads", "1"])
        XCTAssertTrue(b2.contains("resumed"), b2)

        let expected = try metrics(single)
        let losses = expected.filter { $0.contains("\"loss\"") }
        XCTAssertEqual(losses.count, 10)
        XCTAssertTrue(losses[0].contains("\"kd_weight\":1"), losses[0])
        XCTAssertTrue(losses[9].contains("\"kd_weight\":0"), losses[9])
        // The stopped run also validated at its stop (update 4).
        let resumed = try metrics(multi).filter { !($0.contains("\"valid_loss\"") && $0.contains("\"step\":4,")) }
        XCTAssertEqual(resumed, expected)
        XCTAssertEqual(finalHash(b2), try XCTUnwrap(finalHash(a)))
        // 6 updates x 8 sequences x 32 tokens x (2 N + 4 L D T) of the teacher.
        let teacherCheckpoint = try Checkpoint.read(from: try XCTUnwrap(RunFolder(teacher).latest))
        let n = Double(try XCTUnwrap(teacherCheckpoint.tensor("parameters")).count)
        let expectedFLOPs = 6 * 8 * 32 * (2 * n + 4 * 1 * 16 * 32)
        let last = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(losses[9].utf8)) as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(last["teacher_flops"] as? Double), expectedFLOPs, accuracy: 1e-6 * expectedFLOPs)
    }

    /// `--kd-until teacher`: the student passes a weak teacher's validation loss, rank 0 ends
    /// distillation there on every rank, a_t is 0 from that update on; 1 rank x 2 micro-batches
    /// and 2 ranks x 1 stopped right after the decision and resumed are the same bits.
    func testPassingTheTeacherEndsDistillationAlikeOnEveryRank() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = sampleDataPath(), teacher = folder + "/teacher", single = folder + "/single", multi = folder + "/multi"
        try trainTeacher(data: data, out: teacher)
        let ki = ["--teacher", teacher, "--kd-temperature", "1", "--kd-until", "teacher", "--kd-start", "first"]
        let a = try run(student(data: data, out: single, steps: 20) + ki + ["--accumulation", "2"])
        let decision = try XCTUnwrap(a.split(separator: "\n").first { $0.contains("the student passed the teacher") }, a)
        let step = try XCTUnwrap(Int(decision.split(separator: "|")[0].split(separator: " ")[1]))
        XCTAssertTrue((5..<20).contains(step), String(decision))
        let records = try metrics(single)
        XCTAssertTrue(records.contains { $0.contains("\"distillation_end\"") && $0.contains("\"step\":\(step),") })
        for record in records where record.contains("\"kd_weight\"") {
            let r = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(record.utf8)) as? [String: Any])
            let at = try XCTUnwrap(r["step"] as? Int), weight = try XCTUnwrap(r["kd_weight"] as? Double)
            if at > step { XCTAssertEqual(weight, 0, record) } else { XCTAssertGreaterThan(weight, 0, record) }
        }
        _ = try runMPI(2, student(data: data, out: multi, steps: 20) + ki + ["--accumulation", "1", "--stop-after", "\(step)"])
        let b = try runMPI(2, ["train", "--out", multi, "--resume", "--threads", "1"])
        XCTAssertFalse(b.contains("the student passed the teacher"), "decided before the stop: " + b)
        XCTAssertEqual(finalHash(b), try XCTUnwrap(finalHash(a)))
        XCTAssertEqual(try metrics(multi).filter { $0.contains("\"loss\"") }, records.filter { $0.contains("\"loss\"") })
    }

    /// `elle teacher-cache` then `elle train --kd-cache` gives the same run, bit for bit, as the
    /// live teacher restricted to its top 10 (`--kd-top-k 10`); a cache for other data is refused.
    func testTeacherCacheCommandMatchesLiveTopK() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = sampleDataPath("biomedical"), teacher = folder + "/teacher", cache = folder + "/teacher.kd"
        try trainTeacher(data: data, out: teacher)
        let built = try run(["teacher-cache", "--teacher", teacher, "--data", data, "--seq", "32", "--top-k", "10",
                             "--out", cache, "--threads", "1"])
        XCTAssertTrue(built.contains("wrote \(cache)"), built)
        // `--kd-until teacher` with a cache measures the live teacher its header names.
        _ = try run(student(data: data, out: folder + "/live", steps: 6) + ["--teacher", teacher, "--kd-top-k", "10", "--kd-steps", "6", "--kd-until", "teacher", "--kd-start", "first"])
        let cached = try run(student(data: data, out: folder + "/cached", steps: 6) + ["--kd-cache", cache, "--kd-steps", "6", "--kd-until", "teacher", "--kd-start", "first"])
        XCTAssertTrue(cached.contains("top-10 teacher cache"), cached)
        func withoutFLOPs(_ lines: [String]) -> [String] {
            // The cache's teacher FLOPs are the cost of building it, not of these updates.
            lines.map { $0.replacingOccurrences(of: #""(teacher|total)_flops":[0-9.e+]+,?"#, with: "", options: .regularExpression) }
        }
        XCTAssertEqual(withoutFLOPs(try metrics(folder + "/cached")), withoutFLOPs(try metrics(folder + "/live")))
        let other = try runProcess(elleExecutable, student(data: sampleDataPath("legal"), out: folder + "/other", steps: 2)
                                   + ["--kd-cache", cache])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("other training tokens"), other.stderr)
    }
}
