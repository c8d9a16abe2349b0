import Foundation
import TestSupport
import XCTest

/// `elle finetune` as a user runs it, on one process and under `mpirun`: a tiny BERT pre-trained
/// on the bundled sample classifies sample lines by their domain (legal or literature).
final class FinetuneJobTests: XCTestCase {
    func testFinetuneOnOneAndTwoRanks() throws {
        let folder = temporaryFolder("elle-finetune-job")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/prepared"
        let sampleRoot = (sampleDataPath() as NSString).deletingLastPathComponent
        let prepared = try runProcess(elleExecutable, ["data", "prepare", "--raw", sampleRoot, "--out", data, "--tokenizer", "train:600",
                                                       "--domains", "legal,literature", "--train-mb", "0.3", "--threads", "2"])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        let bert = try runProcess(elleExecutable, ["train", "--model", "bert", "--data", data, "--domain", "legal", "--out", folder + "/bert",
                                                   "--layers", "1", "--width", "32", "--heads", "2", "--seq", "32", "--batch", "4",
                                                   "--steps", "4", "--threads", "1"])
        XCTAssertEqual(bert.status, 0, bert.stderr)

        // The task: 40 lines of each domain's sample text, labeled by domain, split 24/8/8 per label.
        let task = folder + "/task"
        try FileManager.default.createDirectory(atPath: task, withIntermediateDirectories: true)
        var splits: [String: [String]] = ["train": [], "dev": [], "test": []]
        for domain in ["legal", "literature"] {
            let files = try FileManager.default.contentsOfDirectory(atPath: sampleDataPath(domain)).sorted().prefix(3)
            let lines = try files.flatMap { file in
                try String(contentsOfFile: sampleDataPath(domain) + "/" + file, encoding: .utf8)
                    .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.count > 30 }
            }.prefix(40)
            XCTAssertEqual(lines.count, 40)
            for (i, line) in lines.enumerated() {
                let record = String(decoding: try JSONSerialization.data(withJSONObject: ["text": line, "label": domain]), as: UTF8.self)
                splits[i < 24 ? "train" : i < 32 ? "dev" : "test"]!.append(record)
            }
        }
        for (split, rows) in splits { try (rows.joined(separator: "\n") + "\n").write(toFile: "\(task)/\(split).jsonl", atomically: true, encoding: .utf8) }

        let arguments = ["finetune", "--checkpoint", folder + "/bert", "--task", task, "--domain", "legal", "--epochs", "3",
                         "--batch", "8", "--lr", "1e-3", "--threads", "1"]
        let one = try runProcess(elleExecutable, arguments + ["--result", folder + "/one.json"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stdout.contains("2 classes (legal, literature); train 48, dev 16, test 16 examples; sequences <|bos|> <|domain:legal|>"), one.stdout)
        XCTAssertTrue(one.stdout.contains("test accuracy "), one.stdout)
        let two = try MPIJob.run(ranks: 2, elleExecutable, arguments + ["--result", folder + "/two.json", "--no-prompt"])
        XCTAssertEqual(two.status, 0, two.stdout + two.stderr)
        XCTAssertTrue(two.stdout.contains("over 2 rank(s)") && two.stdout.contains("(no prompt)"), two.stdout)
        for (name, ranks, prompt) in [("one", 1, true), ("two", 2, false)] {
            let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name).json"))) as? [String: Any])
            let test = try XCTUnwrap(record["test"] as? [String: Any])
            let accuracy = try XCTUnwrap(test["accuracy"] as? Double)
            XCTAssertTrue((0...1).contains(accuracy))
            XCTAssertEqual(test["count"] as? Int, 16)
            XCTAssertEqual(record["ranks"] as? Int, ranks)
            XCTAssertEqual(record["prompt"] as? Bool, prompt)
            XCTAssertEqual(record["updates"] as? Int, 18, "3 epochs of 6 batches, no early stop at patience 3 within 3 evaluations")
        }

        // A domain the tokenizer has no prompt for is refused with the reason.
        let unknown = try runProcess(elleExecutable, arguments + ["--domain", "astronomy"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("--domain astronomy") && unknown.stderr.contains("no prompt token"), unknown.stderr)
    }
}
