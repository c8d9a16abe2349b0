import Corpus
import Foundation
import Tensors
import TestSupport
import XCTest

/// GPT-2's vocab.json and merges.txt, fetched by scripts/fetch-gpt2.sh (scripts/setup.sh and
/// scripts/test.sh run it) into corpora/gpt2; loaded once for all tests.
enum GPT2Files {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("corpora/gpt2").path
    static let tokenizer: Result<BPETokenizer, Error> = Result {
        try BPETokenizer.loadGPT2(vocab: folder + "/vocab.json", merges: folder + "/merges.txt",
                                  domains: ["encyclopedic", "literature"])
    }
    static func load() throws -> BPETokenizer {
        do { return try tokenizer.get() } catch {
            XCTFail("GPT-2 tokenizer files missing or bad (run scripts/fetch-gpt2.sh): \(error)")
            throw error
        }
    }
}

final class PreTokenizerTests: XCTestCase {
    func pieces(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var out: [String] = []
        bytes.withUnsafeBufferPointer { b in
            PreTokenizer.split(b.baseAddress!, b.count) { s, e in out.append(String(decoding: b[s..<e], as: UTF8.self)) }
        }
        return out
    }

    /// Cases worked out by hand from the regex's alternation order and backtracking.
    func testPiecesFollowTheRegex() {
        XCTAssertEqual(pieces("a   b"), ["a", "  ", " b"])
        XCTAssertEqual(pieces("a   "), ["a", "   "])
        XCTAssertEqual(pieces("a \nb"), ["a", " ", "\n", "b"])
        XCTAssertEqual(pieces("a\n\nb"), ["a", "\n", "\n", "b"])
        XCTAssertEqual(pieces("don't we'll 'S"), ["don", "'t", " we", "'ll", " '", "S"])
        XCTAssertEqual(pieces("x 's"), ["x", " '", "s"])
        XCTAssertEqual(pieces("abc123 4.5!?"), ["abc", "123", " 4", ".", "5", "!?"])
        XCTAssertEqual(pieces("e\u{301}t\u{e9}"), ["e", "\u{301}", "t\u{e9}"])
        XCTAssertEqual(pieces("\u{6771}\u{4eac} \u{1F600}\u{1F600}"), ["\u{6771}\u{4eac}", " \u{1F600}\u{1F600}"])
        XCTAssertEqual(pieces("a\u{a0}b"), ["a", "\u{a0}", "b"])
        XCTAssertEqual(pieces(""), [])
    }

    func testInvalidUTF8SplitsWithoutLosingBytes() {
        let bytes: [UInt8] = [0x61, 0xFF, 0xC3, 0x20, 0xE2, 0x82, 0x62, 0xF0, 0x9F, 0x98]
        var covered = 0
        bytes.withUnsafeBufferPointer { b in
            PreTokenizer.split(b.baseAddress!, b.count) { s, e in
                XCTAssertEqual(s, covered)
                covered = e
            }
        }
        XCTAssertEqual(covered, bytes.count)
    }
}

final class BPETests: XCTestCase {
    /// elle's encoding with GPT-2's files equals tiktoken's gpt2 on every fixture case (edge cases
    /// and excerpts of the bundled sample), and decodes back to the text.
    func testGPT2MatchesTiktoken() throws {
        let tokenizer = try GPT2Files.load()
        let data = try Data(contentsOf: fixtureURL("gpt2-tiktoken.json"))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cases = root["cases"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 30)
        var tokens = 0
        for c in cases {
            let text = c["text"] as! String, expected = (c["tokens"] as! [Int]).map(Int32.init)
            let got = tokenizer.encode(text)
            XCTAssertEqual(got, expected, "case \(c["name"]!)")
            XCTAssertEqual(tokenizer.decode(got), text, "case \(c["name"]!)")
            tokens += got.count
        }
        XCTAssertGreaterThan(tokens, 15_000)
        XCTAssertEqual(tokenizer.encode("Hello world"), [15496, 995])
    }

    func testGPT2SpecialIds() throws {
        let t = try GPT2Files.load()
        XCTAssertEqual(t.ordinaryCount, 50256)
        XCTAssertEqual(t.endOfText, 50256)
        XCTAssertEqual([t.pad, t.mask, t.beginOfSequence], [50257, 50258, 50259])
        XCTAssertEqual(t.promptId(domain: "encyclopedic"), 50260)
        XCTAssertEqual(t.promptId(domain: "literature"), 50261)
        XCTAssertEqual(t.vocabularySize, 50256 + 4 + 2 + 16)
        XCTAssertEqual(t.tokenText(50256), "<|endoftext|>")
        // Special names in text are ordinary text.
        XCTAssertFalse(t.encode("<|endoftext|>").contains(t.endOfText))
        XCTAssertEqual(t.decode([15496, t.endOfText, 995]), "Hello world")
    }

    /// A domain that arrives later takes a spare prompt: the vocabulary size does not change.
    func testLaterDomainTakesASpare() throws {
        let t = try trainOnSample(vocabularySize: 300)
        let size = t.vocabularySize
        XCTAssertEqual(size, 300)
        let id = try t.assignPrompt(domain: "religious")
        XCTAssertEqual(id, t.endOfText + 5)
        XCTAssertEqual(t.vocabularySize, size)
        XCTAssertEqual(t.promptDomains, ["literature", "religious"])
        for k in 0..<15 { try t.assignPrompt(domain: "d\(k)") }
        XCTAssertThrowsError(try t.assignPrompt(domain: "one-too-many"))
    }

    /// decode(encode(x)) == x for random valid UTF-8 mixing scripts, whitespace, marks and emoji;
    /// and for random bytes (invalid UTF-8) at the byte level.
    func testRoundTripProperty() throws {
        let gpt2 = try GPT2Files.load()
        let trained = try trainOnSample(vocabularySize: 600)
        let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0x09...0x0D, 0xA0...0x17F, 0x300...0x36F, 0x391...0x3C9,
                                             0x4E00...0x4E80, 0x3040...0x309F, 0x1F600...0x1F64F, 0x2000...0x206F]
        var rng = Xoshiro256(seed: 11)
        for trial in 0..<300 {
            var scalars = String.UnicodeScalarView()
            for _ in 0..<rng.nextInt(below: 80) {
                let range = ranges[rng.nextInt(below: ranges.count)]
                let v = range.lowerBound + UInt32(rng.nextInt(below: Int(range.upperBound - range.lowerBound + 1)))
                if let s = Unicode.Scalar(v) { scalars.append(s) }
                if rng.nextInt(below: 4) == 0 { scalars.append(" ") }
            }
            let text = String(scalars)
            XCTAssertEqual(gpt2.decode(gpt2.encode(text)), text, "trial \(trial)")
            XCTAssertEqual(trained.decode(trained.encode(text)), text, "trial \(trial)")
            let bytes = (0..<rng.nextInt(below: 64)).map { _ in UInt8(rng.nextInt(below: 256)) }
            XCTAssertEqual(gpt2.decodeBytes(gpt2.encode(bytes: bytes)), bytes, "trial \(trial)")
            XCTAssertEqual(trained.decodeBytes(trained.encode(bytes: bytes)), bytes, "trial \(trial)")
        }
    }

    func testParallelEncodingEqualsSerial() throws {
        let t = try GPT2Files.load()
        var text = [UInt8]()
        for domain in ["literature", "biomedical", "legal"] {
            for file in try TextCorpus.listFiles(sampleDataPath(domain)) { text += Array(FileManager.default.contents(atPath: file)!) }
        }
        // The cuts fall both after single newlines and between double ones.
        let cuts = text.withUnsafeBufferPointer { PreTokenizer.safeCuts($0.baseAddress!, $0.count, parts: 200) }
        XCTAssertGreaterThan(cuts.count, 150)
        XCTAssertTrue(cuts.contains { text[$0 - 1] == 0x0A && text[$0] == 0x0A })
        let serial = text.withUnsafeBufferPointer { t.encode(bytes: $0) }
        for threads in [2, 3, 7, 200] {
            XCTAssertEqual(text.withUnsafeBufferPointer { t.encodeParallel(bytes: $0, threads: threads) }, serial)
        }
        XCTAssertEqual(t.decodeBytes(serial), text)
    }

    func trainOnSample(vocabularySize: Int, threads: Int = 2) throws -> BPETokenizer {
        let texts = try TextCorpus.listFiles(sampleDataPath()).map { Array(FileManager.default.contents(atPath: $0)!) }
        let buffers = texts.map { t in t.withUnsafeBufferPointer { UnsafeBufferPointer(start: $0.baseAddress, count: $0.count) } }
        return try withExtendedLifetime(texts) {
            try BPETrainer.train(documents: buffers, vocabularySize: vocabularySize, domains: ["literature"], threads: threads)
        }
    }

    /// Training gives exactly the requested size, frequent English merges first, the same result
    /// for any thread count, and real compression.
    func testTrainingOnSample() throws {
        let a = try trainOnSample(vocabularySize: 2000, threads: 1)
        let b = try trainOnSample(vocabularySize: 2000, threads: 2)
        XCTAssertEqual(a.vocabularySize, 2000)
        XCTAssertEqual(a.tokenBytes, b.tokenBytes)
        XCTAssertEqual(a.endOfText, Int32(2000 - 4 - 1 - 16))
        XCTAssertEqual(a.promptId(domain: "literature"), a.endOfText + 4)
        let early = (256..<266).map { String(decoding: a.tokenBytes[$0], as: UTF8.self) }
        XCTAssertTrue(early.contains(" t") || early.contains("th") || early.contains("e "), "\(early)")
        let text = try String(contentsOfFile: sampleDataPath() + "/shakespeare_hamlet.txt", encoding: .utf8)
        let tokens = a.encode(text)
        XCTAssertLessThan(Double(tokens.count), Double(text.utf8.count) / 2.6, "2k vocab should compress English well")
        XCTAssertEqual(a.decode(tokens), text)
    }

    /// tokenizer.json written by elle loads back to the same encoder (trained and GPT-2).
    func testTokenizerJSONRoundTrip() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let text = try String(contentsOf: fixtureURL("bpe-edge-cases.txt"), encoding: .utf8)
        for (name, tokenizer) in [("trained", try trainOnSample(vocabularySize: 700)), ("gpt2", try GPT2Files.load())] {
            let path = folder + "/\(name).json"
            try tokenizer.save(to: path)
            let loaded = try BPETokenizer.load(path)
            XCTAssertEqual(loaded.vocabularySize, tokenizer.vocabularySize, name)
            XCTAssertEqual(loaded.specials, tokenizer.specials, name)
            XCTAssertEqual(loaded.encode(text), tokenizer.encode(text), name)
            XCTAssertEqual(loaded.merges.count, tokenizer.merges.count, name)
        }
    }

    func testBadTokenizerFilesNameTheFile() throws {
        XCTAssertThrowsError(try BPETokenizer.load("/no/such/tokenizer.json")) { error in
            XCTAssertTrue("\(error)".contains("/no/such/tokenizer.json"), "\(error)")
        }
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Data("{\"model\": 3}".utf8).write(to: URL(fileURLWithPath: folder + "/t.json"))
        XCTAssertThrowsError(try BPETokenizer.load(folder + "/t.json")) { error in
            XCTAssertTrue("\(error)".contains("t.json") && "\(error)".contains("model.vocab"), "\(error)")
        }
    }
}
