import Foundation
import TestSupport
import XCTest

/// A public-style BERT with a WordPiece tokenizer as the start of lifelong training, run as a
/// user runs it: import, prepare data with its tokenizer, a plan that starts from the import.
final class WordPieceCLITests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-wordpiece-cli") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func elle(_ arguments: [String], status: Int32 = 0, line: UInt = #line) throws -> (stdout: String, stderr: String) {
        let result = try runProcess(elleExecutable, arguments)
        XCTAssertEqual(result.status, status, "elle \(arguments.joined(separator: " ")): \(result.stderr)", line: line)
        return (result.stdout, result.stderr)
    }

    func plan(width: Int) -> String {
        """
        name: wordpiece
        model: {architecture: bert, layers: 2, width: \(width), heads: 4, ffn: 72, context: 32, dropout: 0.1}
        initFrom: \(folder)/bert
        data: \(folder)/data
        tensorboard: \(folder)/tb-\(width)
        defaults: {batch: 4, seq: 32, lr: 1.0e-3, evalBatches: 2, logEvery: 2, replay: {ratio: 0.25}}
        stages:
          - {domain: literature, steps: 6}
          - {domain: legal, steps: 6, grow: {layers: 3, width: \(width * 3 / 2), heads: 6, ffn: 108}, frw: {steps: 2}}
        """
    }

    /// Must show 3 (third part): the transformers-saved WordPiece BertForMaskedLM imports, its
    /// tokenizer prepares the data (a prompt per domain, taken from the spares the import
    /// appended), and a lifelong BERT plan starts from it (growth, warmup, replay, prompts),
    /// writing TensorBoard files; a plan whose model is not the checkpoint's is refused by field.
    func testLifelongBertPlanStartsFromImportedWordPieceBert() throws {
        let source = fixtureURL("hf-bert-wordpiece").path
        let imported = try elle(["import", "--from", source, "--out", folder + "/bert/"]).stdout
        XCTAssertTrue(imported.contains("V528") && imported.contains("16 special token(s) the folder lacks"), imported)
        _ = try elle(["data", "prepare", "--raw", (sampleDataPath() as NSString).deletingLastPathComponent, "--out", folder + "/data",
                      "--tokenizer", source + "/tokenizer.json", "--domains", "literature,legal", "--threads", "2"])
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/data/manifest.json"))) as! [String: Any]
        XCTAssertEqual((manifest["tokenizer"] as! [String: Any])["vocabulary_size"] as? Int, 528)
        XCTAssertEqual((manifest["domains"] as! [[String: Any]]).map { $0["prompt_token"] as? Int }, [512, 513])
        let tokenizer = try String(contentsOfFile: folder + "/data/tokenizer.json", encoding: .utf8)
        XCTAssertTrue(tokenizer.contains("\"type\": \"WordPiece\"") && tokenizer.contains("<|domain:legal|>"))

        try plan(width: 32).write(toFile: folder + "/plan.yaml", atomically: true, encoding: .utf8)
        let run = try elle(["train", "--config", folder + "/plan.yaml", "--out", folder + "/run", "--threads", "2"]).stdout
        XCTAssertTrue(run.contains("initialized from \(folder)/bert: bert L2 D32 H4x8 F72 V528"), run)
        XCTAssertTrue(run.contains("stage 2/2 (legal) done"), run)
        let records = try String(contentsOfFile: folder + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(records.filter { $0.contains("\"stage_end\"") }.count, 2)
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: folder + "/tb-32").contains { $0.hasPrefix("events.out.tfevents.") })

        try plan(width: 64).write(toFile: folder + "/wide.yaml", atomically: true, encoding: .utf8)
        let refused = try elle(["train", "--config", folder + "/wide.yaml", "--out", folder + "/wide", "--threads", "2"], status: 1)
        XCTAssertTrue(refused.stderr.contains("model.width: is 64, but the initFrom model"), refused.stderr)
    }
}
