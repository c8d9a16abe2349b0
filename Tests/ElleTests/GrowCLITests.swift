import Foundation
import TestSupport
import XCTest

/// `elle grow` and training from its output, run as a user runs them.
final class GrowCLITests: XCTestCase {
    /// Trains a small model for 40 updates into `out`.
    func trainSource(_ out: String) throws {
        let run = try runProcess(elleExecutable, [
            "train", "--data", sampleDataPath(), "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
            "--seq", "32", "--batch", "4", "--steps", "40", "--lr", "3e-3", "--warmup", "5", "--dropout", "0",
            "--log-every", "10", "--eval-every", "0", "--threads", "2"])
        XCTAssertEqual(run.status, 0, run.stderr)
    }

    /// 64 tokens sampled at temperature 1 with a fixed seed: models with the same function (up to
    /// float rounding) give the same text, and the text is varied enough that a changed function
    /// shows.
    func sample(_ checkpoint: String) throws -> String {
        let run = try runProcess(elleExecutable, ["sample", "--checkpoint", checkpoint, "--prompt", "ROMEO.",
                                                  "--tokens", "64", "--temperature", "1", "--top-k", "0",
                                                  "--seed", "7", "--threads", "2"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertGreaterThan(Set(run.stdout.dropFirst(6)).count, 10, "the sample should be varied: \(run.stdout)")
        return run.stdout
    }

    /// An exact growth (identity layers, 2-fold round-robin width, no noise) written into a run
    /// folder samples the same text as its source, and `elle train --resume` continues the
    /// run on the grown model.
    func testExactGrowthKeepsSamplesAndResumes() throws {
        let source = temporaryFolder(), grown = temporaryFolder()
        defer { for f in [source, grown] { try? FileManager.default.removeItem(atPath: f) } }
        try trainSource(source)
        let grow = try runProcess(elleExecutable, [
            "grow", "--from", source, "--out", grown, "--layers", "4", "--width", "64", "--depth-mode", "identity",
            "--source", "round-robin", "--noise", "0"])
        XCTAssertEqual(grow.status, 0, grow.stderr)
        XCTAssertTrue(grow.stdout.contains("gpt L4 D64 H4x16 F256"), grow.stdout)
        XCTAssertTrue(grow.stdout.contains("layer origins [0, 0, 1, 1]"), grow.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: grown + "/step-00000040.ckpt"))
        XCTAssertEqual(try sample(grown), try sample(source))

        let resumed = try runProcess(elleExecutable, ["train", "--out", grown, "--resume", "--steps", "43", "--threads", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("gpt L4 D64"), resumed.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: grown + "/step-00000043.ckpt"))
    }

    /// A growth with carried moments starts a new run through `elle train --init-from`, which
    /// picks up the grown model and its Adam state; a noisy copy growth changes the sampled text.
    func testCarriedMomentsStartANewRun() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try trainSource(folder + "/source")
        let grown = folder + "/grown.ckpt"
        let grow = try runProcess(elleExecutable, [
            "grow", "--from", folder + "/source", "--out", grown, "--layers", "3", "--width", "64", "--heads", "4",
            "--moments", "carry", "--seed", "4"])
        XCTAssertEqual(grow.status, 0, grow.stderr)
        XCTAssertTrue(grow.stdout.contains("carried (optimizer step 40)"), grow.stdout)
        XCTAssertNotEqual(try sample(grown), try sample(folder + "/source"))

        let run = try runProcess(elleExecutable, [
            "train", "--data", sampleDataPath(), "--init-from", grown, "--out", folder + "/next", "--seq", "32",
            "--batch", "4", "--steps", "3", "--lr", "1e-3", "--warmup", "1", "--dropout", "0", "--log-every", "1",
            "--eval-every", "0", "--threads", "2"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("Adam moments carried (optimizer step 40)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("gpt L3 D64 H4x16"), run.stdout)
        XCTAssertTrue(run.stdout.contains("step      3/3"), run.stdout)
        XCTAssertFalse(run.stdout.contains("nan"), run.stdout)
    }

    /// `elle bench grow` reports a timed growth as JSON, with the parent's --vocab and --threads;
    /// an impossible target is refused naming the field.
    func testGrowthBenchmark() throws {
        let run = try runProcess(elleExecutable, ["bench", "grow", "--from", "2/64/2", "--to", "3/128/4", "--vocab", "100",
                                                  "--context", "16", "--repeats", "2", "--threads", "1", "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let fields = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], run.stdout)
        XCTAssertEqual(fields["vocab"] as? Int, 100)
        XCTAssertEqual(fields["threads"] as? Int, 1)
        // wte, wpe, 3 blocks (two norms, qkv, proj, fc, mlp proj with biases), lnf.
        let block = 4 * 128 + (3 * 128 * 128 + 3 * 128) + (128 * 128 + 128) + (512 * 128 + 512) + (128 * 512 + 128)
        XCTAssertEqual(fields["parameters_to"] as? Int, 100 * 128 + 16 * 128 + 3 * block + 2 * 128)
        XCTAssertGreaterThan(fields["grow_ms_best"] as? Double ?? 0, 0)
        let bad = try runProcess(elleExecutable, ["bench", "grow", "--from", "2/64/2", "--to", "3/96/4", "--vocab", "100", "--context", "16"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("heads"), bad.stderr)
    }

    /// Bad growths fail before writing anything, with the field (or path) named.
    func testBadGrowthsAreRejectedNamingTheField() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try trainSource(folder + "/source")
        let out = folder + "/out.ckpt"
        func grow(_ extra: [String], from: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
            try runProcess(elleExecutable, ["grow", "--from", from ?? folder + "/source", "--out", out] + extra)
        }
        let cases: [([String], String)] = [
            (["--layers", "1"], "layers cannot shrink"),
            (["--width", "48", "--heads", "4"], "heads must be width / head dimension = 3"),
            (["--width", "40"], "width must be a multiple of the head dimension 16"),
            (["--ffn", "64"], "ffn cannot shrink"),
            (["--noise", "-1"], "--noise"),
            (["--depth-mode", "pile"], "depth-mode"),
            (["--ramp", "0"], "--ramp must be at least 1"),
        ]
        for (arguments, message) in cases {
            let run = try grow(arguments)
            XCTAssertNotEqual(run.status, 0, "\(arguments)")
            XCTAssertTrue(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
        let missing = try grow([], from: folder + "/no-such.ckpt")
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no-such.ckpt"), missing.stderr)
        // A reset growth keeps no moments, so growing it again with carry is refused.
        XCTAssertEqual(try grow(["--width", "64"]).status, 0)
        let carry = try grow(["--width", "128", "--moments", "carry"], from: out)
        XCTAssertNotEqual(carry.status, 0)
        XCTAssertTrue(carry.stderr.contains("moments"), carry.stderr)
        XCTAssertTrue(carry.stderr.contains("out.ckpt"), carry.stderr)
    }

    // MARK: growth inside a run

    /// `elle train` growing 2/32/2 -> 3/64/4 after update 10 of 20, checkpoints every 5.
    func growingRun(out: String, extra: [String] = []) -> [String] {
        ["train", "--data", sampleDataPath(), "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
         "--seq", "32", "--batch", "4", "--steps", "20", "--lr", "3e-3", "--warmup", "5", "--log-every", "1",
         "--eval-every", "5", "--checkpoint-every", "5", "--threads", "1", "--seed", "3",
         "--grow-at", "10", "--grow-to", "3/64/4"] + extra
    }

    /// metrics.jsonl without the timing field.
    func metrics(_ folder: String) throws -> [String] {
        try String(contentsOfFile: folder + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            $0.replacingOccurrences(of: #","(tokens_per_second|mfu)":[0-9.e+-]+"#, with: "", options: .regularExpression)
        }
    }

    /// Must show: `--resume` across a growth event is bit-exact. Stopped at update 10 (the
    /// checkpoint is from before the growth), the resumed run grows at once; stopped at 15, it
    /// loads the grown model. Both end with the uninterrupted run's checkpoint, byte for byte.
    func testResumeAcrossGrowthIsBitExact() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let straight = try runProcess(elleExecutable, growingRun(out: folder + "/straight"))
        XCTAssertEqual(straight.status, 0, straight.stderr)
        XCTAssertTrue(straight.stdout.contains("growth after update 10 to gpt L3 D64 H4x16 F256"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("step     10 | grew gpt L2 D32"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("step     10 | valid loss after growth"), straight.stdout)
        let expected = try Data(contentsOf: URL(fileURLWithPath: folder + "/straight/step-00000020.ckpt"))
        for stop in [10, 15] {
            let out = folder + "/stop\(stop)"
            let first = try runProcess(elleExecutable, growingRun(out: out, extra: ["--stop-after", "\(stop)"]))
            XCTAssertEqual(first.status, 0, first.stderr)
            let resumed = try runProcess(elleExecutable, ["train", "--out", out, "--resume", "--threads", "1"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertTrue(resumed.stdout.contains("model gpt L\(stop == 10 ? 2 : 3) D\(stop == 10 ? 32 : 64)"), resumed.stdout)
            XCTAssertEqual(resumed.stdout.contains("| grew "), stop == 10, resumed.stdout)
            XCTAssertEqual(try metrics(out), try metrics(folder + "/straight"), "stopped at \(stop)")
            let final = try Data(contentsOf: URL(fileURLWithPath: out + "/step-00000020.ckpt"))
            XCTAssertEqual(final, expected, "stopped at \(stop): final checkpoint differs")
        }
    }

    /// Growth options are checked before any training, naming the option.
    func testBadGrowthOptionsAreRejected() throws {
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let base = ["train", "--data", sampleDataPath(), "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
                    "--seq", "32", "--batch", "4", "--steps", "20", "--threads", "1"]
        let cases: [([String], String)] = [
            (["--grow-at", "5"], "--grow-at and --grow-to go together"),
            (["--grow-noise", "0"], "--grow-at and --grow-to go together"),
            (["--grow-at", "5", "--grow-to", "3x64"], "--grow-to must be LAYERS/WIDTH/HEADS"),
            (["--grow-at", "5", "--grow-to", "1/32/2"], "layers cannot shrink"),
            (["--grow-at", "5", "--grow-to", "3/48/4"], "heads must be width / head dimension = 3"),
            (["--grow-at", "20", "--grow-to", "3/64/4"], "--grow-at 20 must be below --steps 20"),
            (["--grow-at", "5", "--grow-to", "3/64/4", "--grow-noise=-1"], "--grow-noise must be a finite"),
            (["--grow-at", "5", "--grow-to", "3/64/4", "--grow-moments", "keep"], "grow-moments"),
        ]
        for (arguments, message) in cases {
            let run = try runProcess(elleExecutable, base + arguments)
            XCTAssertNotEqual(run.status, 0, "\(arguments)")
            XCTAssertTrue(run.stderr.contains(message), "\(arguments): \(run.stderr)")
            XCTAssertFalse(run.stdout.contains("step "), "\(arguments): training started")
        }
        let resume = try runProcess(elleExecutable, ["train", "--out", out, "--resume", "--grow-at", "5", "--grow-to", "3/64/4"])
        XCTAssertNotEqual(resume.status, 0)
        XCTAssertTrue(resume.stderr.contains("a resumed run keeps the growth it was started with"), resume.stderr)
    }
}
