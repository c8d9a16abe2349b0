import Foundation
import TestSupport
import XCTest

/// The `elle` command line, run as a user runs it.
final class CLITests: XCTestCase {
    /// Losses logged to metrics.jsonl, by step (JSON doubles print shortest round-trip, so equal
    /// text means equal bits).
    func losses(_ folder: String) throws -> [String] {
        let text = try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8)
        return text.split(separator: "\n").filter { $0.contains("\"loss\"") }.map { line in
            String(line.split(separator: ",").first { $0.contains("\"loss\"") }!)
        }
    }

    func trainArguments(_ out: String, steps: Int) -> [String] {
        ["train", "--data", sampleDataPath(), "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
         "--seq", "32", "--batch", "4", "--accumulation", "2", "--steps", "\(steps)", "--log-every", "1",
         "--eval-every", "0", "--checkpoint-every", "4", "--threads", "2"]
    }

    /// `elle train` stopped after 4 of 8 steps and continued with --resume logs the same losses,
    /// bit for bit, as one uninterrupted 8-step run, and ends with an identical checkpoint.
    func testResumeThroughTheCommandLine() throws {
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let full = try runProcess(elleExecutable, trainArguments(straight, steps: 8))
        XCTAssertEqual(full.status, 0, full.stderr)
        // The first half is a run whose schedule also spans 8 steps, stopped after step 4.
        var firstHalf = trainArguments(split, steps: 8)
        firstHalf += ["--stop-after", "4"]
        let a = try runProcess(elleExecutable, firstHalf)
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try runProcess(elleExecutable, ["train", "--out", split, "--resume", "--threads", "1"])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stdout.contains("resumed"), b.stdout)
        let expected = try losses(straight)
        XCTAssertEqual(expected.count, 8)
        XCTAssertEqual(try losses(split), expected)
        let x = try Data(contentsOf: URL(fileURLWithPath: straight + "/step-00000008.ckpt"))
        let y = try Data(contentsOf: URL(fileURLWithPath: split + "/step-00000008.ckpt"))
        XCTAssertEqual(x, y, "final checkpoints differ")
    }

    func testBadArgumentsAreRejectedBeforeWork() throws {
        let missing = try runProcess(elleExecutable, ["train", "--data", "/no/such/file.txt", "--steps", "1"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/no/such/file.txt"), missing.stderr)
        let heads = try runProcess(elleExecutable, ["bench", "--width", "30", "--heads", "4"])
        XCTAssertNotEqual(heads.status, 0)
        XCTAssertTrue(heads.stderr.contains("--heads"), heads.stderr)
    }

    func testSampleFromCheckpoint() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        XCTAssertEqual(try runProcess(elleExecutable, trainArguments(out, steps: 2)).status, 0)
        let sample = try runProcess(elleExecutable, ["sample", "--checkpoint", out, "--prompt", "ROMEO.", "--tokens", "40", "--seed", "3"])
        XCTAssertEqual(sample.status, 0, sample.stderr)
        XCTAssertTrue(sample.stdout.hasPrefix("ROMEO."))
        XCTAssertGreaterThan(sample.stdout.utf8.count, 20)
        let again = try runProcess(elleExecutable, ["sample", "--checkpoint", out, "--prompt", "ROMEO.", "--tokens", "40", "--seed", "3"])
        XCTAssertEqual(sample.stdout, again.stdout, "sampling with a fixed seed is deterministic")
    }
}
