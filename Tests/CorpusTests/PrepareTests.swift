import Corpus
import Foundation
import Tensors
import TestSupport
import XCTest

final class PrepareTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-prepare") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    var sampleRoot: String { (sampleDataPath() as NSString).deletingLastPathComponent }

    func prepare(out: String, threads: Int = 2, raw: String? = nil, shardTokens: Int = 1 << 26) throws -> DataManifest {
        var options = PrepareOptions(raw: raw ?? sampleRoot, out: out, tokenizer: .train(vocabularySize: 1024))
        options.threads = threads
        options.shardTokens = shardTokens
        return try DataPreparer.prepare(options)
    }

    /// Every domain of the bundled sample gets train/valid/memory splits of the configured sizes;
    /// train + valid hold all the text, with one end-of-text per file.
    func testPrepareBundledSample() throws {
        let manifest = try prepare(out: folder + "/out")
        XCTAssertEqual(manifest.domains.map(\.name), ["biomedical", "legal", "literature"])
        XCTAssertEqual(manifest.tokenizer.vocabularySize, 1024)
        XCTAssertEqual(manifest.tokenBytes, 2)
        let data = try PreparedData(folder: folder + "/out")
        XCTAssertEqual(data.manifest, manifest)
        let tokenizer = try XCTUnwrap(try data.tokenizer() as? BPETokenizer)
        XCTAssertEqual(tokenizer.vocabularySize, 1024)
        for domain in manifest.domains {
            let total = domain.train.tokens + domain.valid.tokens
            XCTAssertGreaterThan(domain.train.tokens, 50_000, domain.name)
            XCTAssertEqual(Double(domain.valid.tokens) / Double(total), 0.05, accuracy: 0.03, domain.name)
            XCTAssertEqual(Double(domain.memory.tokens) / Double(domain.train.tokens), 0.1, accuracy: 0.04, domain.name)
            XCTAssertEqual(domain.promptToken, tokenizer.promptId(domain: domain.name))
            let train = try data.stream(domain.train).toArray(), valid = try data.stream(domain.valid).toArray()
            XCTAssertEqual(tokenizer.decodeBytes(train).count + tokenizer.decodeBytes(valid).count, domain.bytes, domain.name)
            XCTAssertEqual((train + valid).filter { $0 == tokenizer.endOfText }.count, domain.files, domain.name)
            // Memory pieces are training pieces: every memory token sequence is inside train.
            let memory = try data.stream(domain.memory).toArray()
            XCTAssertEqual(memory.count, domain.memory.tokens)
            XCTAssertTrue(String(decoding: tokenizer.decodeBytes(train), as: UTF8.self)
                .contains(String(decoding: tokenizer.decodeBytes(Array(memory.prefix(200))), as: UTF8.self)))
        }
        XCTAssertThrowsError(try data.domain(nil)) { XCTAssertTrue("\($0)".contains("choose one with --domain"), "\($0)") }
        XCTAssertThrowsError(try data.domain("law")) { XCTAssertTrue("\($0)".contains("has no domain law"), "\($0)") }
    }

    /// Same inputs and seed: the same bytes in every shard and manifest, for any thread count
    /// and shard size.
    func testPrepareIsDeterministic() throws {
        let a = try prepare(out: folder + "/a", threads: 1)
        let b = try prepare(out: folder + "/b", threads: 3)
        XCTAssertEqual(a, b)
        for domain in a.domains {
            for shard in domain.train.shards + domain.valid.shards + domain.memory.shards {
                XCTAssertEqual(FileManager.default.contents(atPath: folder + "/a/" + shard.file),
                               FileManager.default.contents(atPath: folder + "/b/" + shard.file), shard.file)
            }
        }
        let c = try prepare(out: folder + "/c", threads: 2, shardTokens: 40_000)
        for (x, y) in zip(a.domains, c.domains) {
            XCTAssertGreaterThan(y.train.shards.count, 1)
            XCTAssertEqual(try PreparedData(folder: folder + "/a").stream(x.train).toArray(),
                           try PreparedData(folder: folder + "/c").stream(y.train).toArray())
        }
    }

    func testBadInputNamesTheFile() throws {
        func expectError(_ raw: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try prepare(out: folder + "/out", raw: raw), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: line)
            }
        }
        expectError("/no/such/raw", "/no/such/raw: does not exist")
        let raw = folder + "/raw"
        try FileManager.default.createDirectory(atPath: raw, withIntermediateDirectories: true)
        expectError(raw, "holds no domain folders")
        try FileManager.default.createDirectory(atPath: raw + "/empty", withIntermediateDirectories: true)
        expectError(raw, "\(raw)/empty: is an empty domain")
        try Data().write(to: URL(fileURLWithPath: raw + "/empty/a.txt"))
        expectError(raw, "\(raw)/empty: is an empty domain")
        try Data("text\n".utf8).write(to: URL(fileURLWithPath: raw + "/empty/a.txt"))
        try FileManager.default.createDirectory(atPath: raw + "/bad", withIntermediateDirectories: true)
        try Data([0x61, 0x62, 0xFE, 0x63]).write(to: URL(fileURLWithPath: raw + "/bad/latin1.txt"))
        expectError(raw, "\(raw)/bad/latin1.txt: is not valid UTF-8 (byte 0xFE at offset 2)")
        try Data([0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x00, 0x00]).write(to: URL(fileURLWithPath: raw + "/bad/latin1.txt"))
        expectError(raw, "\(raw)/bad/latin1.txt: looks like binary data")
        XCTAssertThrowsError(try PreparedData(folder: raw)) { error in
            XCTAssertTrue("\(error)".contains("\(raw)/manifest.json: does not exist"), "\(error)")
        }
    }
}
