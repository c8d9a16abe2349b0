import Corpus
import Foundation
import Tensors
import TestSupport
import XCTest

final class WordPieceTests: XCTestCase {
    /// Tests/Fixtures/wordpiece/mixed.txt.gz, one line per element.
    static let lines: [String] = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "gzip -dc '\(fixtureURL("wordpiece/mixed.txt.gz").path)'"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try? process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        var lines = String(decoding: data, as: UTF8.self).components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        return lines
    }()

    /// Must show 3 (first part): elle's WordPiece gives Hugging Face `tokenizers`' ids on 1.15 MB
    /// of mixed text (every BMP code point alone and between letters, and seeded lines of English,
    /// accents, combining marks, CJK, Greek, Cyrillic, emoji, punctuation, words over 100
    /// characters, odd whitespace and control characters) with BERT's uncased vocabulary, as
    /// shipped (lowercase, accents stripped) and cased (neither).
    func testIdsEqualHuggingFaceOnMixedText() throws {
        let lines = Self.lines
        let bytes = lines.reduce(0) { $0 + $1.utf8.count + 1 }
        XCTAssertGreaterThan(bytes, 1_000_000)
        let hashes = try String(contentsOf: fixtureURL("wordpiece/mixed.hashes"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(hashes.count, (lines.count + 15) / 16)
        let uncased = try WordPieceTokenizer.loadVocabulary(fixtureURL("wordpiece/vocab.txt").path)
        XCTAssertEqual(uncased.normalization, WordPieceTokenizer.Normalization())
        var casedSettings = WordPieceTokenizer.Normalization()
        casedSettings.lowercase = false
        casedSettings.stripAccents = false
        let cased = try WordPieceTokenizer(tokens: uncased.tokens, normalization: casedSettings)
        for (column, tokenizer) in [uncased, cased].enumerated() {
            var different: [Int] = []
            var tokens = 0
            for (b, row) in hashes.enumerated() {
                var ids: [Int32] = []
                for line in lines[(b * 16)..<min(lines.count, b * 16 + 16)] {
                    ids += tokenizer.encode(line)
                    ids.append(-1)
                }
                tokens += ids.count - min(16, lines.count - b * 16)
                let hash = ids.withUnsafeBytes { XXH64.hash($0) }
                if String(format: "%016llx", hash) != row[column] { different.append(b) }
                XCTAssertEqual(String(ids.count - min(16, lines.count - b * 16)), row[2 + column], "block \(b) token count")
            }
            XCTAssertEqual(different, [], "\(column == 0 ? "uncased" : "cased"): blocks whose ids differ from Hugging Face's (lines 16 b ..< 16 b + 16)")
            XCTAssertEqual(tokens, hashes.reduce(0) { $0 + Int($1[2 + column])! })
        }
    }

    /// BERT's basic tokenization, by hand: lowercasing and accent stripping, punctuation and CJK
    /// split off, ## continuations, [UNK] for an uncoverable word and for one over 100 characters,
    /// control characters dropped, specials' names encoded as text.
    func testBasicTokenization() throws {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff", "##able", "!", ",",
                     "cafe", "中", "国", "[", "]", "mask", "a", "##a", "ok"]
        let t = try WordPieceTokenizer(tokens: vocab)
        func ids(_ text: String) -> [String] { t.encode(text).map { t.tokenText($0) } }
        XCTAssertEqual(ids("Hello, WORLD!"), ["hello", ",", "world", "!"])
        XCTAssertEqual(ids("unaffable Café"), ["un", "##aff", "##able", "cafe"])
        XCTAssertEqual(ids("中国ok"), ["中", "国", "ok"])
        XCTAssertEqual(ids("unx hello"), ["[UNK]", "hello"])
        XCTAssertEqual(ids(String(repeating: "a", count: 100)), ["a"] + Array(repeating: "##a", count: 99))
        XCTAssertEqual(ids(String(repeating: "a", count: 101) + " ok"), ["[UNK]", "ok"])
        XCTAssertEqual(ids("he\u{0}llo\u{200B} ok\u{7}"), ["hello", "ok"])
        XCTAssertEqual(ids("[MASK]"), ["[", "mask", "]"])
        XCTAssertEqual(t.vocabularySize, vocab.count + 16)
        XCTAssertEqual([t.pad, t.beginOfSequence, t.endOfText, t.mask, t.unknown], [0, 2, 3, 4, 1])
        XCTAssertEqual(t.decode(t.encode("Hello unaffable world")), "hello unaffable world")
    }

    /// elle's tokenizer.json keeps the vocabulary's ids, settings and specials, with the domain
    /// prompts after the vocabulary, and reads back the same; vocab.txt and tokenizer.json of a
    /// folder load through `TokenizerFile`.
    func testFilesRoundTrip() throws {
        let folder = temporaryFolder("elle-wordpiece")
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "##s", "é"]
        try (vocab.joined(separator: "\n") + "\n").write(toFile: folder + "/vocab.txt", atomically: true, encoding: .utf8)
        try #"{"do_lower_case": false, "tokenize_chinese_chars": true}"#.write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        let loaded = try XCTUnwrap(try TokenizerFile.load(folder) as? WordPieceTokenizer)
        XCTAssertEqual(loaded.tokens, vocab)
        XCTAssertFalse(loaded.normalization.lowercase)
        XCTAssertEqual(loaded.encode("hellos é"), [5, 6, 7])
        XCTAssertEqual(try loaded.assignPrompt(domain: "legal"), 8)
        try loaded.save(to: folder + "/tokenizer.json")
        let again = try XCTUnwrap(try TokenizerFile.load(folder + "/tokenizer.json") as? WordPieceTokenizer)
        XCTAssertEqual(again.tokens, vocab)
        XCTAssertEqual(again.specials, loaded.specials)
        XCTAssertEqual(again.normalization, loaded.normalization)
        XCTAssertEqual(again.promptId(domain: "legal"), 8)
        XCTAssertEqual(again.promptDomains, ["legal"])
        XCTAssertEqual(again.specialTokens.map(\.name), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|domain:legal|>"]
                       + (1..<16).map { "<|domain:spare-\($0)|>" })
        try #"{"model": {"type": "Unigram", "vocab": []}}"#.write(toFile: folder + "/u.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TokenizerFile.load(folder + "/u.json")) { XCTAssertTrue("\($0)".contains("Unigram"), "\($0)") }
        try "[PAD]\nhello\n".write(toFile: folder + "/v2.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TokenizerFile.load(folder + "/v2.txt")) { XCTAssertTrue("\($0)".contains("[UNK]"), "\($0)") }
    }
}
