import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The lifelong run (`elle train --config`) as real MPI jobs on the built `elle`.
final class LifelongJobTests: XCTestCase {
    static let data: String = {
        let folder = temporaryFolder("elle-lifelong-mpi-data")
        let sample = (sampleDataPath() as NSString).deletingLastPathComponent
        let result = try! runProcess(elleExecutable, ["data", "prepare", "--raw", sample, "--out", folder, "--tokenizer", "train:512"])
        precondition(result.status == 0, result.stderr)
        return folder
    }()

    static func writePlan(accumulation: Int = 2) throws -> String {
        let path = temporaryFolder() + "/plan.yaml"
        let text = """
            name: mpi-test
            model: {layers: 1, width: 32, heads: 2, context: 32, dropout: 0.1}
            data: \(data)
            seed: 3
            defaults:
              batch: 4
              seq: 32
              accumulation: \(accumulation)
              lr: 3.0e-3
              replay: {ratio: 0.5, weighting: adaptive, interval: 2, evalBatches: 2}
              evalBatches: 3
              logEvery: 1
            stages:
              - domain: literature
                steps: 6
              - domain: legal
                steps: 4
                grow: {layers: 2, width: 64, heads: 4}
                frw: {steps: 2}
              - domain: biomedical
                steps: 4
                grow: {layers: 3, width: 64, heads: 4, depthMode: identity}
                frw: {steps: 2}
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func mpirun(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try MPIJob.run(ranks: 2, elleExecutable, arguments)
    }

    func records(_ folder: String) throws -> [String] {
        try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map { line in
            var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["tokens_per_second", "mfu", "seconds"] { record[key] = nil }
            return String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    /// Must show: a 3-stage run with growth, warmup, replay and prompts on 2 ranks keeps the
    /// parameters identical on both ranks and reports every seen domain; stopped and resumed on 2
    /// ranks (in the middle of a stage, inside a warmup, just after a growth, just before a stage
    /// end) it logs the same records and ends with the same checkpoint, byte for byte.
    func testThreeStagesOnTwoRanksAndResume() throws {
        let plan = try Self.writePlan()
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let full = try mpirun(["train", "--config", plan, "--out", straight, "--threads", "1"])
        XCTAssertEqual(full.status, 0, full.stdout + full.stderr)
        XCTAssertTrue(full.stdout.contains("identical on 2 rank(s)"), full.stdout)
        XCTAssertTrue(full.stdout.contains("grew to gpt L2 D64") && full.stdout.contains("2 rank(s) verified"), full.stdout)
        let report = try String(contentsOfFile: straight + "/report.md", encoding: .utf8)
        for row in ["| 0 literature |", "| 1 legal |", "| 2 biomedical |"] { XCTAssertTrue(report.contains(row), report) }
        let matrix = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: straight + "/perplexity.json"))) as? [String: Any]
        XCTAssertEqual((matrix?["values"] as? [[Double]])?.map(\.count), [1, 2, 3])

        // Updates: stage 0 = 1...6; stage 1 warmup 7...8, training 9...12; stage 2 warmup 13...14.
        let expected = try records(straight)
        let final = try Data(contentsOf: URL(fileURLWithPath: straight + "/stage-02-biomedical.ckpt"))
        for (stop, what) in [(3, "mid-stage"), (7, "inside warmup"), (6, "just after a growth"), (11, "just before a stage end")] {
            try? FileManager.default.removeItem(atPath: split)
            let first = try mpirun(["train", "--config", plan, "--out", split, "--threads", "1", "--stop-after", "\(stop)"])
            XCTAssertEqual(first.status, 0, what + first.stdout + first.stderr)
            XCTAssertTrue(first.stdout.contains("stopped after update \(stop)"), what + first.stdout)
            let second = try mpirun(["train", "--config", plan, "--out", split, "--threads", "1", "--resume"])
            XCTAssertEqual(second.status, 0, what + second.stdout + second.stderr)
            XCTAssertEqual(try records(split), expected, what)
            let b = try Data(contentsOf: URL(fileURLWithPath: split + "/stage-02-biomedical.ckpt"))
            XCTAssertEqual(final, b, "final checkpoints differ: \(what)")
        }
    }

    /// Must show (issue 11): SIGTERM during a run leaves a checkpoint from which resume is exact.
    func testSIGTERMLeavesAnExactCheckpoint() throws {
        let plan = try Self.writePlan()
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let full = try runProcess(elleExecutable, ["train", "--config", plan, "--out", straight, "--threads", "2"])
        XCTAssertEqual(full.status, 0, full.stderr)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: elleExecutable)
        process.arguments = ["train", "--config", plan, "--out", split, "--threads", "2"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait for training to be under way (a few updates logged), then ask it to stop.
        let metrics = split + "/metrics.jsonl"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: metrics, encoding: .utf8), text.split(separator: "\n").count >= 3 { break }
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        let log = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0, log)
        XCTAssertTrue(log.contains("stopped after update"), log)
        let resumed = try runProcess(elleExecutable, ["train", "--config", plan, "--out", split, "--threads", "2", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try records(split), try records(straight))
    }
}
