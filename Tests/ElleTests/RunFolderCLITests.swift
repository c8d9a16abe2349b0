import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The run layer through the command line: a plain run stopped by SIGTERM writes a checkpoint
/// and resumes bit for bit; every command picks the same checkpoint from a run folder whose
/// newest file is corrupt; runtime failures print `Error: ...` without the usage text.
final class RunFolderCLITests: XCTestCase {
    func train(_ out: String, steps: Int, extra: [String] = []) -> [String] {
        ["train", "--data", sampleDataPath(), "--out", out, "--layers", "2", "--width", "32", "--heads", "2",
         "--seq", "32", "--batch", "4", "--accumulation", "2", "--steps", "\(steps)", "--log-every", "1",
         "--eval-every", "0", "--threads", "1", "--seed", "4"] + extra
    }

    /// Must show (issue 21, 2): SIGTERM in the middle of a plain run: the run finishes its
    /// update, writes a checkpoint and exits 0; `--resume` then logs the same losses and ends
    /// with the same parameter hash and final checkpoint bytes as an uninterrupted run.
    func testPlainRunCheckpointsOnSIGTERMAndResumesBitForBit() throws {
        let straight = temporaryFolder(), split = temporaryFolder()
        defer { for f in [straight, split] { try? FileManager.default.removeItem(atPath: f) } }
        let steps = 1500
        let full = try runProcess(elleExecutable, train(straight, steps: steps))
        XCTAssertEqual(full.status, 0, full.stderr)
        XCTAssertTrue(full.stdout.contains("MFU"), "progress lines report MFU: \(full.stdout.prefix(400))")

        let job = try LiveProcess(elleExecutable, train(split, steps: steps))
        defer { job.stop() }
        XCTAssertNotNil(job.waitFor(#"step +20/"#, timeout: 120), job.output)
        kill(job.pid, SIGTERM)
        XCTAssertTrue(job.waitForExit(timeout: 60), "the run did not stop after SIGTERM: \(job.output.suffix(400))")
        XCTAssertEqual(job.status, 0, job.output)
        let stopped = try XCTUnwrap(job.waitFor(#"stopped after update (\d+)"#, timeout: 1).flatMap { Int($0) }, job.output)
        XCTAssertLessThan(stopped, steps, "SIGTERM came too late to test anything")
        XCTAssertTrue(FileManager.default.fileExists(atPath: split + String(format: "/step-%08d.ckpt", stopped)), job.output)

        let resumed = try runProcess(elleExecutable, ["train", "--out", split, "--resume", "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains(String(format: "step-%08d.ckpt at step %d of %d", stopped, stopped, steps)), resumed.stdout)
        XCTAssertEqual(try JobRecords.metrics(split).filter { $0.contains("\"loss\"") }, try JobRecords.metrics(straight).filter { $0.contains("\"loss\"") })
        XCTAssertEqual(JobRecords.finalHash(resumed.stdout), try XCTUnwrap(JobRecords.finalHash(full.stdout)))
        let name = String(format: "/step-%08d.ckpt", steps)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: straight + name)), try Data(contentsOf: URL(fileURLWithPath: split + name)))
        print("SIGTERM after update \(stopped) of \(steps): checkpoint written, resumed run equal bit for bit")
    }

    /// A full disk (issue 23): under a file-size limit below one checkpoint, the background write
    /// of update 50's checkpoint fails; the run stops at the next update boundary (not at the
    /// next checkpoint, 50 updates later) with an error naming the file, and leaves no partial file.
    func testFailedCheckpointWriteStopsTheRunNamingTheFile() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let arguments = train(folder, steps: 400, extra: ["--checkpoint-every", "50", "--log-every", "10"])
        let limited = try runProcess("/bin/bash", ["-c", #"ulimit -f 200; exec "$@""#, "bash", elleExecutable] + arguments)
        XCTAssertNotEqual(limited.status, 0, limited.stdout)
        let output = limited.stdout + limited.stderr
        XCTAssertTrue(output.contains("step-00000050.ckpt write failed: File too large"), output)
        XCTAssertFalse(output.contains("Usage"), output)
        let logged = output.matches(of: #/step +(\d+)/400/#).compactMap { Int($0.1) }.max() ?? 0
        XCTAssertGreaterThanOrEqual(logged, 50, output)
        XCTAssertLessThan(logged, 100, "the run went on to the next checkpoint after the failed write: \(output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder)
        XCTAssertFalse(files.contains { $0.hasPrefix("step-") }, "no checkpoint or partial file is left: \(files)")
        print("full disk: update 50's checkpoint write failed, the run stopped after update \(logged) naming the file")
    }

    /// Must show (issue 21, 3): in a run folder whose newest checkpoint is corrupt, `train
    /// --resume`, `eval`, `sample`, `grow` and `export` all skip it, name it, and use the same
    /// older checkpoint.
    func testEveryCommandPicksTheSameCheckpointPastACorruptNewestOne() throws {
        let folder = temporaryFolder(), run = folder + "/run"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        XCTAssertEqual(try runProcess(elleExecutable, train(run, steps: 8, extra: ["--checkpoint-every", "4"])).status, 0)
        let newest = run + "/step-00000008.ckpt", older = run + "/step-00000004.ckpt"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: newest))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: newest))
        try "ROMEO. What light\n".write(toFile: folder + "/text.txt", atomically: true, encoding: .utf8)

        let commands: [(String, [String])] = [
            ("eval", ["eval", "--checkpoint", run, "--text", folder + "/text.txt", "--threads", "1"]),
            ("sample", ["sample", "--checkpoint", run, "--tokens", "5", "--threads", "1"]),
            ("grow", ["grow", "--from", run, "--out", folder + "/grown.ckpt", "--width", "48", "--heads", "3", "--threads", "1"]),
            ("export", ["export", "--checkpoint", run, "--format", "hf", "--out", folder + "/hf"]),
            ("train --resume", ["train", "--out", run, "--resume", "--threads", "1"]),
        ]
        for (name, arguments) in commands {
            let result = try runProcess(elleExecutable, arguments)
            XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("skipping checkpoint \(newest)") && result.stderr.contains("corrupt"), "\(name): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("using \(older)"), "\(name) does not say which checkpoint it used: \(result.stderr)")
        }
    }

    /// Must show (issue 21, 4): failures found while running (not malformed arguments) print
    /// `Error: ...` naming the problem, exit non-zero, and never the usage text.
    func testRuntimeErrorsPrintNoUsageText() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/raw/binary", withIntermediateDirectories: true)
        try Data([0x66, 0x6F, 0xFF, 0xFE, 0x00, 0x81]).write(to: URL(fileURLWithPath: folder + "/raw/binary/a.txt"))
        try "not a checkpoint".write(toFile: folder + "/bad.ckpt", atomically: true, encoding: .utf8)
        try """
            model: {layers: 2, width: 64, heads: 2, context: 64}
            data: \(folder)/nowhere
            stages:
              - domain: a
                steps: 0
            """.write(toFile: folder + "/plan.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: folder + "/empty", withIntermediateDirectories: true)

        let failures: [(arguments: [String], says: String)] = [
            (["train", "--data", "/nonexistent", "--steps", "1"], "/nonexistent"),
            (["data", "prepare", "--raw", folder + "/raw", "--out", folder + "/prepared", "--tokenizer", "train:400"], "binary"),
            (["sample", "--checkpoint", folder + "/bad.ckpt"], "bad.ckpt"),
            (["grow", "--from", folder + "/no-such-run", "--out", folder + "/g.ckpt", "--width", "64"], "no-such-run"),
            (["train", "--config", folder + "/plan.yaml", "--out", folder + "/lifelong"], "stages[0].steps"),
            (["train", "--out", folder + "/empty", "--resume"], "holds no checkpoint"),
            (["eval", "--checkpoint", folder + "/missing"], "missing"),
        ]
        for (arguments, says) in failures {
            let result = try runProcess(elleExecutable, arguments)
            let name = arguments.prefix(2).joined(separator: " ")
            XCTAssertNotEqual(result.status, 0, name)
            XCTAssertTrue(result.stderr.contains("Error: ") && result.stderr.contains(says), "\(name): \(result.stderr)")
            XCTAssertFalse(result.stderr.contains("Usage:") || result.stderr.contains("USAGE:") || result.stdout.contains("Usage:"),
                           "\(name) printed the usage text: \(result.stderr)")
        }
        // A malformed argument still gets the usage text.
        let malformed = try runProcess(elleExecutable, ["train", "--data", "x", "--dropout", "2"])
        XCTAssertTrue(malformed.stderr.contains("--dropout") && malformed.stderr.contains("Usage:"), malformed.stderr)
    }
}
