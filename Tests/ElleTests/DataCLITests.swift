import Foundation
import TestSupport
import XCTest

/// `elle data prepare` and training on its output, run as a user runs them.
final class DataCLITests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-data-cli") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    var sampleRoot: String { (sampleDataPath() as NSString).deletingLastPathComponent }

    func prepare(_ out: String, _ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
        try runProcess(elleExecutable, ["data", "prepare", "--raw", sampleRoot, "--out", out, "--tokenizer", "train:800", "--threads", "2"] + extra)
    }

    func losses(_ run: String) throws -> [String] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("\"loss\"") }
            .map { String($0.split(separator: ",").first { $0.contains("\"loss\"") }!) }
    }

    /// Prepared BPE data trains, resumes bit-exactly through the memory-mapped loader, and
    /// samples with the prepared tokenizer.
    func testPrepareTrainResumeSample() throws {
        let data = folder + "/prepared"
        let prepared = try prepare(data)
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        XCTAssertTrue(prepared.stdout.contains("3 domain(s), vocabulary 800, uint16 shards"), prepared.stdout)
        func train(_ out: String, _ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try runProcess(elleExecutable, ["train", "--data", data, "--domain", "legal", "--out", out, "--layers", "1", "--width", "32",
                                            "--heads", "2", "--seq", "32", "--batch", "4", "--steps", "6", "--log-every", "1",
                                            "--eval-every", "3", "--threads", "2"] + extra)
        }
        let straight = try train(folder + "/a", [])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        XCTAssertTrue(straight.stdout.contains("domain legal") && straight.stdout.contains("V800"), straight.stdout)
        XCTAssertEqual(try train(folder + "/b", ["--stop-after", "3"]).status, 0)
        let resumed = try runProcess(elleExecutable, ["train", "--out", folder + "/b", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try losses(folder + "/a").count, 6)
        XCTAssertEqual(try losses(folder + "/b"), try losses(folder + "/a"))
        let sample = try runProcess(elleExecutable, ["sample", "--checkpoint", folder + "/a", "--prompt", "Permission is", "--tokens", "20"])
        XCTAssertEqual(sample.status, 0, sample.stderr)
        XCTAssertTrue(sample.stdout.hasPrefix("Permission is"), sample.stdout)

        let noDomain = try runProcess(elleExecutable, ["train", "--data", data, "--out", folder + "/c", "--steps", "1"])
        XCTAssertNotEqual(noDomain.status, 0)
        XCTAssertTrue(noDomain.stderr.contains("choose one with --domain"), noDomain.stderr)
    }

    /// `elle bench tokenizer` trains, times and reports; the GPT-step bench keeps its flags.
    func testTokenizerBench() throws {
        let bench = try runProcess(elleExecutable, ["bench", "tokenizer", "--text", sampleDataPath(), "--tokenizer", "train:600",
                                                    "--train-mb", "0.3", "--thread-counts", "1,2", "--repeats", "1",
                                                    "--save", folder + "/t.json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        XCTAssertTrue(bench.stdout.contains("vocabulary 600"), bench.stdout)
        XCTAssertTrue(bench.stdout.contains("train: ") && bench.stdout.contains("MB/s on 2 thread(s)"), bench.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/t.json"))
        let help = try runProcess(elleExecutable, ["bench", "--help"])
        XCTAssertTrue(help.stdout.contains("--layers") && help.stdout.contains("tokenizer"), help.stdout)
    }

    func testBadInputIsNamed() throws {
        let missing = try runProcess(elleExecutable, ["data", "prepare", "--raw", "/no/such/raw", "--out", folder + "/o", "--tokenizer", "train:800"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/no/such/raw: does not exist"), missing.stderr)
        let raw = folder + "/raw/web"
        try FileManager.default.createDirectory(atPath: raw, withIntermediateDirectories: true)
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00]).write(to: URL(fileURLWithPath: raw + "/image.txt"))
        let binary = try runProcess(elleExecutable, ["data", "prepare", "--raw", folder + "/raw", "--out", folder + "/o", "--tokenizer", "train:800"])
        XCTAssertNotEqual(binary.status, 0)
        XCTAssertTrue(binary.stderr.contains("\(raw)/image.txt: is not valid UTF-8 (byte 0x89 at offset 0)"), binary.stderr)
        let vocab = try runProcess(elleExecutable, ["data", "prepare", "--raw", sampleRoot, "--out", folder + "/o", "--tokenizer", "train:12"])
        XCTAssertNotEqual(vocab.status, 0)
        XCTAssertTrue(vocab.stderr.contains("train:SIZE"), vocab.stderr)
    }

    /// A prepare killed at any moment leaves only whole shards (header and size agree); the next
    /// run cleans up its temporary files and completes.
    func testInterruptedPrepareLeavesNoHalfShard() throws {
        let out = folder + "/killed"
        for delay in [0.05, 0.2, 0.4, 0.7] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: elleExecutable)
            process.arguments = ["data", "prepare", "--raw", sampleRoot, "--out", out, "--tokenizer", "train:800", "--threads", "1"]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            for file in (FileManager.default.enumerator(atPath: out)?.allObjects as? [String] ?? []) where file.hasSuffix(".bin") {
                let data = try Data(contentsOf: URL(fileURLWithPath: out + "/" + file))
                XCTAssertGreaterThanOrEqual(data.count, 48, file)
                XCTAssertEqual(String(decoding: data.prefix(8), as: UTF8.self), "ELLETOKS", file)
                let width = data[12...15].withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
                let count = data[16...23].withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
                XCTAssertEqual(data.count, 48 + width * count, "\(file) is a half-written shard")
            }
        }
        let finished = try prepare(out)
        XCTAssertEqual(finished.status, 0, finished.stderr)
        let leftovers = (FileManager.default.enumerator(atPath: out)?.allObjects as? [String] ?? []).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }
}
