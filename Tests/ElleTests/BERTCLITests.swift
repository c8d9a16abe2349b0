import Foundation
import TestSupport
import XCTest

/// `--model bert` through the command line, as a user runs it: train on prepared BPE data,
/// resume bit-exactly, grow, continue from the grown model, bench; raw text and sampling are
/// refused with a message saying why.
final class BERTCLITests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-bert-cli") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(elleExecutable, arguments)
    }

    func losses(_ run: String) throws -> [String] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("loss") }
            .map { String($0.split(separator: ",").first { $0.contains("loss") }!) }
    }

    func testTrainResumeGrowAndContinue() throws {
        let data = folder + "/prepared"
        let sampleRoot = (sampleDataPath() as NSString).deletingLastPathComponent
        let prepared = try run(["data", "prepare", "--raw", sampleRoot, "--out", data, "--tokenizer", "train:800", "--threads", "2"])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        func train(_ out: String, _ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try run(["train", "--model", "bert", "--data", data, "--domain", "legal", "--out", out, "--layers", "2", "--width", "32",
                     "--heads", "2", "--seq", "32", "--batch", "4", "--steps", "8", "--log-every", "1", "--eval-every", "4",
                     "--lr", "3e-3", "--warmup", "2", "--threads", "2"] + extra)
        }
        let straight = try train(folder + "/a", [])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        XCTAssertTrue(straight.stdout.contains("model bert L2 D32") && straight.stdout.contains("masked LM: <|bos|> first, 15% of positions predicted"),
                      straight.stdout)
        XCTAssertEqual(try train(folder + "/b", ["--stop-after", "4"]).status, 0)
        let resumed = try run(["train", "--out", folder + "/b", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try losses(folder + "/a").count, 10, "8 training and 2 validation losses")
        XCTAssertEqual(try losses(folder + "/b"), try losses(folder + "/a"))

        let sample = try run(["sample", "--checkpoint", folder + "/a"])
        XCTAssertNotEqual(sample.status, 0)
        XCTAssertTrue(sample.stderr.contains("does not generate text"), sample.stderr)

        let grown = try run(["grow", "--from", folder + "/a", "--layers", "3", "--width", "64", "--out", folder + "/grown.ckpt"])
        XCTAssertEqual(grown.status, 0, grown.stderr)
        XCTAssertTrue(grown.stdout.contains("to bert L3 D64 H4x16 F256 V"), grown.stdout)
        let continued = try run(["train", "--init-from", folder + "/grown.ckpt", "--data", data, "--domain", "legal", "--out", folder + "/c",
                                 "--seq", "32", "--batch", "4", "--steps", "3", "--log-every", "1", "--threads", "2"])
        XCTAssertEqual(continued.status, 0, continued.stderr)
        XCTAssertTrue(continued.stdout.contains("model bert L3 D64"), continued.stdout)
    }

    func testRawTextIsRefusedForBERT() throws {
        let result = try run(["train", "--model", "bert", "--data", sampleDataPath(), "--out", folder + "/x", "--steps", "1"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("--model bert needs a prepared data folder") && result.stderr.contains("<|mask|>"), result.stderr)
        let bad = try run(["train", "--model", "roberta", "--data", sampleDataPath()])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("roberta"), bad.stderr)
    }

    func testBench() throws {
        let bench = try run(["bench", "--model", "bert", "--layers", "1", "--width", "32", "--heads", "2", "--vocab", "100",
                             "--seq", "16", "--batch", "2", "--steps", "1", "--threads", "1", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any], bench.stdout)
        XCTAssertEqual(json["model"] as? String, "bert")
        XCTAssertGreaterThan(json["tokens_per_second"] as? Double ?? 0, 0)
        // 15% of 32 positions are predicted at initialization: loss near ln(100).
        XCTAssertEqual(json["loss"] as? Double ?? 0, log(100), accuracy: 0.5)
    }
}
