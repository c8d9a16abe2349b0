import Foundation
import TestSupport
import XCTest

/// `elle export`, `elle import` and `elle eval`, run as a user runs them.
final class InteropCLITests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-interop-cli") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func elle(_ arguments: [String], line: UInt = #line) throws -> String {
        let result = try runProcess(elleExecutable, arguments)
        XCTAssertEqual(result.status, 0, "elle \(arguments.joined(separator: " ")): \(result.stderr)", line: line)
        return result.stdout
    }

    /// The bytes of the logits tensor `elle eval` wrote.
    func logitsBytes(_ path: String) throws -> Data {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        let offsets = (header["logits"] as! [String: Any])["data_offsets"] as! [Int]
        return data.subdata(in: (8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1]))
    }

    /// A trained BPE checkpoint goes out as a Hugging Face folder and comes back as a checkpoint
    /// that computes bit-identical logits, samples the same text, grows and trains on.
    func testExportImportEvalSampleGrowTrain() throws {
        let data = folder + "/prepared", run = folder + "/run", hf = folder + "/hf", imported = folder + "/imported"
        _ = try elle(["data", "prepare", "--raw", (sampleDataPath() as NSString).deletingLastPathComponent, "--out", data,
                      "--tokenizer", "train:600", "--domains", "literature,legal", "--threads", "2"])
        _ = try elle(["train", "--data", data, "--domain", "literature", "--out", run, "--layers", "2", "--width", "32",
                      "--heads", "2", "--seq", "32", "--batch", "4", "--steps", "3", "--eval-every", "0", "--threads", "2"])
        let exported = try elle(["export", "--checkpoint", run, "--format", "hf", "--out", hf])
        XCTAssertTrue(exported.contains("as GPT2LMHeadModel"), exported)
        for file in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: hf + "/" + file), file)
        }
        let importedOut = try elle(["import", "--from", hf, "--out", imported + "/"])
        XCTAssertTrue(importedOut.contains("imported") && importedOut.contains("V600"), importedOut)
        XCTAssertFalse(importedOut.contains("mean embedding row"), "an elle export needs no new rows: \(importedOut)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: imported + "/tokenizer.json"))

        // The same logits, bit for bit, from the original and the imported checkpoint.
        let tokens = folder + "/tokens.txt"
        try "599 1 2 3 300 301 598 40\n10,20,30,40,50,60,70,580\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let a = try elle(["eval", "--checkpoint", run, "--tokens", tokens, "--logits", folder + "/a.safetensors"])
        let b = try elle(["eval", "--checkpoint", imported, "--tokens", tokens, "--logits", folder + "/b.safetensors"])
        XCTAssertTrue(a.contains("sequence 2: 8 tokens, loss"), a)
        XCTAssertEqual(a.split(separator: "\n").prefix(2), b.split(separator: "\n").prefix(2), "losses differ")
        let logits = try logitsBytes(folder + "/a.safetensors")
        XCTAssertEqual(logits.count, 2 * 8 * 600 * 4)
        XCTAssertEqual(logits, try logitsBytes(folder + "/b.safetensors"))
        let text = folder + "/text.txt"
        try "ROMEO. Is the day so young?".write(toFile: text, atomically: true, encoding: .utf8)
        XCTAssertEqual(try elle(["eval", "--checkpoint", run, "--text", text]).split(separator: "\n").first,
                       try elle(["eval", "--checkpoint", imported, "--text", text]).split(separator: "\n").first)

        // The imported checkpoint names its tokenizer: sampling gives the same text.
        let sample = ["sample", "--prompt", "ROMEO.", "--tokens", "20", "--seed", "5"]
        XCTAssertEqual(try elle(sample + ["--checkpoint", run]), try elle(sample + ["--checkpoint", imported]))

        // It grows and trains further on data of its tokenizer.
        _ = try elle(["grow", "--from", imported, "--layers", "3", "--out", folder + "/grown.ckpt"])
        let trained = try elle(["train", "--init-from", folder + "/grown.ckpt", "--data", data, "--domain", "legal",
                                "--out", folder + "/further", "--seq", "32", "--batch", "4", "--steps", "2", "--threads", "2"])
        XCTAssertTrue(trained.contains("L3 D32"), trained)
    }

    /// A trained BERT goes out as a BertForMaskedLM folder and comes back with bit-identical
    /// logits at every position (padding included), and trains on from the import.
    func testBertExportImportEvalTrain() throws {
        let data = folder + "/prepared", run = folder + "/bert", hf = folder + "/bert-hf", imported = folder + "/bert-imported.ckpt"
        _ = try elle(["data", "prepare", "--raw", (sampleDataPath() as NSString).deletingLastPathComponent, "--out", data,
                      "--tokenizer", "train:500", "--domains", "literature,legal", "--threads", "2"])
        _ = try elle(["train", "--model", "bert", "--data", data, "--domain", "literature", "--out", run, "--layers", "2",
                      "--width", "32", "--heads", "2", "--seq", "16", "--batch", "4", "--steps", "3", "--eval-every", "0", "--threads", "2"])
        let exported = try elle(["export", "--checkpoint", run, "--format", "hf", "--out", hf])
        XCTAssertTrue(exported.contains("as BertForMaskedLM"), exported)
        let importedOut = try elle(["import", "--from", hf, "--out", imported])
        XCTAssertTrue(importedOut.contains("(BertForMaskedLM)") && importedOut.contains("bert L2 D32"), importedOut)
        XCTAssertFalse(importedOut.contains("mean embedding row") || importedOut.contains("token type"), importedOut)

        // The specials' ids, from the prepared tokenizer's added tokens.
        let tokenizerJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: data + "/tokenizer.json"))) as! [String: Any]
        var id: [String: Int] = [:]
        for entry in tokenizerJSON["added_tokens"] as! [[String: Any]] { id[entry["content"] as! String] = entry["id"] as? Int }
        let (bos, mask, pad) = (id["<|bos|>"]!, id["<|mask|>"]!, id["<|pad|>"]!)
        let tokens = folder + "/tokens.txt"
        try "\(bos) 1 2 \(mask) 300 301 40 7\n\(bos) 10 \(mask) 30 40 \(pad) \(pad) \(pad)\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        let a = try elle(["eval", "--checkpoint", run, "--tokens", tokens, "--logits", folder + "/a.safetensors"])
        _ = try elle(["eval", "--checkpoint", imported, "--tokens", tokens, "--logits", folder + "/b.safetensors"])
        XCTAssertTrue(a.contains("sequence 2: 8 tokens (masked LM: logits at every position, no loss)"), a)
        let logits = try logitsBytes(folder + "/a.safetensors")
        XCTAssertEqual(logits.count, 2 * 8 * 500 * 4, "every position's logits over the model's vocabulary")
        XCTAssertEqual(logits, try logitsBytes(folder + "/b.safetensors"))

        let trained = try elle(["train", "--init-from", imported, "--data", data, "--domain", "legal", "--out", folder + "/further",
                                "--seq", "16", "--batch", "4", "--steps", "2", "--threads", "2"])
        XCTAssertTrue(trained.contains("bert L2 D32"), trained)
    }

    /// A byte-level checkpoint exports (with a byte tokenizer.json) and imports as byte-level.
    func testByteLevelCheckpointRoundTrip() throws {
        let run = folder + "/run", hf = folder + "/hf"
        _ = try elle(["train", "--data", sampleDataPath(), "--out", run, "--layers", "1", "--width", "16", "--heads", "2",
                      "--seq", "16", "--batch", "2", "--steps", "1", "--threads", "2"])
        XCTAssertTrue(try elle(["export", "--checkpoint", run, "--format", "hf", "--out", hf]).contains("byte tokenizer"))
        let out = try elle(["import", "--from", hf, "--out", folder + "/bytes.ckpt"])
        XCTAssertTrue(out.contains("(byte tokenizer)") && out.contains("V257"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/bytes.tokenizer.json"))
        let sample = ["sample", "--prompt", "To be", "--tokens", "10", "--seed", "2"]
        XCTAssertEqual(try elle(sample + ["--checkpoint", run]), try elle(sample + ["--checkpoint", folder + "/bytes.ckpt"]))
    }

    func testBadInputsNameTheProblem() throws {
        let missing = try runProcess(elleExecutable, ["import", "--from", folder + "/nothing", "--out", folder + "/x.ckpt"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains(folder + "/nothing/config.json"), missing.stderr)
        let format = try runProcess(elleExecutable, ["export", "--checkpoint", folder, "--format", "onnx", "--out", folder + "/o"])
        XCTAssertNotEqual(format.status, 0)
        XCTAssertTrue(format.stderr.contains("onnx"), format.stderr)
        // An imported checkpoint has no data position to resume.
        _ = try elle(["import", "--from", fixtureURL("hf-gpt2-tiny").path, "--out", folder + "/imported/"])
        let resume = try runProcess(elleExecutable, ["train", "--out", folder + "/imported", "--resume"])
        XCTAssertNotEqual(resume.status, 0)
        XCTAssertTrue(resume.stderr.contains("start a run from it with elle train --init-from"), resume.stderr)
        let both = try runProcess(elleExecutable, ["eval", "--checkpoint", folder, "--tokens", "a", "--text", "b"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("at most one of --tokens FILE and --text FILE"), both.stderr)
        let logitsAlone = try runProcess(elleExecutable, ["eval", "--checkpoint", folder, "--logits", "x.safetensors"])
        XCTAssertNotEqual(logitsAlone.status, 0)
        XCTAssertTrue(logitsAlone.stderr.contains("--logits needs --tokens or --text"), logitsAlone.stderr)
    }
}
