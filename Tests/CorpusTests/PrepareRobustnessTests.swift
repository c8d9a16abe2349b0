import Corpus
import Foundation
import TestSupport
import XCTest

/// Must show (issue 23, 3): text as real corpora have it. Windows (CRLF) and old Mac (CR) line
/// endings, a byte-order mark, a domain that is one long line, one that is one big file, and a
/// tiny one: each gets the valid and memory shares asked for (5% and 10%, within a point), or a
/// clear error at prepare time naming the domain.
final class PrepareRobustnessTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-prepare-robust") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    /// About 300 KB of the bundled literature sample, LF line endings.
    lazy var text: String = {
        let files = try! TextCorpus.listFiles(sampleDataPath("literature"))
        var text = ""
        for file in files where text.utf8.count < 300_000 { text += try! String(contentsOfFile: file, encoding: .utf8) }
        return text
    }()

    func write(_ domain: String, _ files: [String: [UInt8]]) throws {
        try FileManager.default.createDirectory(atPath: folder + "/raw/" + domain, withIntermediateDirectories: true)
        for (name, bytes) in files { try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/raw/\(domain)/\(name)")) }
    }

    func prepare(seq: Int = 128) throws -> (DataManifest, [String]) {
        var options = PrepareOptions(raw: folder + "/raw", out: folder + "/out", tokenizer: .train(vocabularySize: 512))
        options.threads = 2
        options.seq = seq
        var log: [String] = []
        let manifest = try DataPreparer.prepare(options) { log.append($0) }
        return (manifest, log)
    }

    func testLineEndingsByteOrderMarkLongLinesAndBigFilesGetTheSharesAskedFor() throws {
        let lf = Array(text.utf8)
        let halves = [Array(lf[..<(lf.count / 2)]), Array(lf[(lf.count / 2)...])]
        try write("lf", ["a.txt": halves[0], "b.txt": halves[1]])
        try write("crlf", ["a.txt": Array(String(decoding: halves[0], as: UTF8.self).replacingOccurrences(of: "\n", with: "\r\n").utf8),
                           "b.txt": Array(String(decoding: halves[1], as: UTF8.self).replacingOccurrences(of: "\n", with: "\r\n").utf8)])
        try write("cr", ["a.txt": Array(String(decoding: halves[0], as: UTF8.self).replacingOccurrences(of: "\n", with: "\r").utf8),
                         "b.txt": Array(String(decoding: halves[1], as: UTF8.self).replacingOccurrences(of: "\n", with: "\r").utf8)])
        try write("bom", ["a.txt": [0xEF, 0xBB, 0xBF] + halves[0], "b.txt": [0xEF, 0xBB, 0xBF] + halves[1]])
        try write("oneline", ["a.txt": Array(text.replacingOccurrences(of: "\n", with: " ").utf8)])
        try write("onefile", ["all.txt": lf + lf + lf + lf])
        let (manifest, log) = try prepare()
        XCTAssertEqual(manifest.domains.map(\.name), ["bom", "cr", "crlf", "lf", "onefile", "oneline"])
        let reference = try XCTUnwrap(manifest.domains.first { $0.name == "lf" })
        for domain in manifest.domains {
            let total = domain.train.tokens + domain.valid.tokens
            let valid = Double(domain.valid.tokens) / Double(total), memory = Double(domain.memory.tokens) / Double(domain.train.tokens)
            XCTAssertEqual(valid, 0.05, accuracy: 0.01, domain.name)
            XCTAssertEqual(memory, 0.10, accuracy: 0.01, domain.name)
            XCTAssertGreaterThan(domain.valid.pieces, 5, domain.name)
            print(String(format: "%@: %d pieces, valid %.2f%%, memory %.2f%% of train", domain.name,
                         domain.train.pieces + domain.valid.pieces, 100 * valid, 100 * memory))
        }
        // Line endings and the mark are read as LF text: the same tokens in all.
        for name in ["crlf", "cr", "bom"] {
            let domain = try XCTUnwrap(manifest.domains.first { $0.name == name })
            XCTAssertEqual(domain.train.tokens + domain.valid.tokens, reference.train.tokens + reference.valid.tokens, name)
            XCTAssertEqual(domain.bytes, reference.bytes, name)
        }
        XCTAssertFalse(log.contains { $0.hasPrefix("warning") }, log.joined(separator: "\n"))
    }

    /// A domain too small for a validation sequence stops prepare, naming the domain and what to
    /// do; prepared for short sequences it works, and a share it cannot meet is a warning.
    func testTinyDomainIsAnErrorAtPrepareTime() throws {
        try write("big", ["a.txt": Array(text.utf8)])
        try write("tiny", ["a.txt": Array(text.utf8.prefix(1500))])
        XCTAssertThrowsError(try prepare()) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("tiny") && message.contains("too small") && message.contains("fewer than one sequence of 128")
                          && message.contains("--seq"), message)
        }
        let (manifest, log) = try prepare(seq: 16)
        let tiny = try XCTUnwrap(manifest.domains.first { $0.name == "tiny" })
        let valid = Double(tiny.valid.tokens) / Double(tiny.train.tokens + tiny.valid.tokens)
        XCTAssertGreaterThanOrEqual(tiny.valid.tokens, 17)
        // Either the share came within a point or prepare said it could not.
        XCTAssertTrue(abs(valid - 0.05) <= 0.01 || log.contains { $0.hasPrefix("warning: domain tiny: the valid split") }, log.joined(separator: "\n"))
    }
}
