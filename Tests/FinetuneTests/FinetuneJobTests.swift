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

        // 2 ranks against 1 with the same settings. Without dropout (its masks are keyed by rank, so
        // with dropout 2 ranks train on other masks than 1) the runs differ only in float32
        // summation order: each rank sums its rows' gradients, then the two partial sums are added
        // (docs/FINETUNE.md), and a rank pads its rows to its own longest sequence. That moves the
        // weights by a few float32 ulps per update, far below what a prediction or a printed loss
        // resolves: the predictions, scores and best update must be the same, and every logged train
        // loss (printed to 4 decimals) equal within one unit of the last printed digit.
        let exact = arguments + ["--dropout", "0", "--head-dropout", "0"]
        let oneExact = try runProcess(elleExecutable, exact + ["--result", folder + "/one-exact.json"])
        XCTAssertEqual(oneExact.status, 0, oneExact.stderr)
        let twoExact = try MPIJob.run(ranks: 2, elleExecutable, exact + ["--result", folder + "/two-exact.json"])
        XCTAssertEqual(twoExact.status, 0, twoExact.stdout + twoExact.stderr)
        func trainLosses(_ stdout: String) -> [Double] {
            stdout.split(separator: "\n").compactMap { line in
                line.range(of: "train loss ").flatMap { Double(line[$0.upperBound...].prefix { $0 != " " }) }
            }
        }
        let (lossesOne, lossesTwo) = (trainLosses(oneExact.stdout), trainLosses(twoExact.stdout))
        XCTAssertEqual(lossesOne.count, 3, "one logged train loss per epoch: \(oneExact.stdout)")
        XCTAssertEqual(lossesTwo.count, lossesOne.count, twoExact.stdout)
        for (a, b) in zip(lossesOne, lossesTwo) { XCTAssertEqual(a, b, accuracy: 1.0001e-4, "train loss, 1 rank against 2") }
        print("fine-tuning without dropout, train losses on 1 rank \(lossesOne), on 2 ranks \(lossesTwo)")
        let records = try ["one-exact", "two-exact"].map { name in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name).json"))) as? [String: Any])
        }
        for key in ["test", "dev"] {
            let (a, b) = (try XCTUnwrap(records[0][key] as? [String: Any]), try XCTUnwrap(records[1][key] as? [String: Any]))
            XCTAssertEqual(a as NSDictionary, b as NSDictionary, "\(key) scores (accuracy, macro-F1, count), 1 rank against 2")
        }
        XCTAssertEqual(records[0]["bestStep"] as? Int, records[1]["bestStep"] as? Int)
        XCTAssertEqual(records.map { $0["ranks"] as? Int }, [1, 2])

        // A domain the tokenizer has no prompt for is refused with the reason.
        let unknown = try runProcess(elleExecutable, arguments + ["--domain", "astronomy"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("--domain astronomy") && unknown.stderr.contains("no prompt token"), unknown.stderr)
    }
}
