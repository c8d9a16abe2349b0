import Corpus
import Foundation
import Tensors
import TestSupport
import XCTest

final class LoaderTests: XCTestCase {
    func stream(_ n: Int) -> Buffer<Int32> { Buffer((0..<n).map { Int32($0 % 1000) }) }

    /// Targets are inputs shifted by one; every window is visited once per epoch.
    func testWindowsAndEpochs() throws {
        let tokens = stream(10 * 8 + 1)
        let loader = try SequenceLoader(tokens: tokens, seq: 8, seed: 3)
        XCTAssertEqual(loader.windowCount, 10)
        var inputs = [Int32](repeating: 0, count: 16), targets = [Int32](repeating: 0, count: 16)
        var starts: [Int32] = []
        for _ in 0..<5 {
            loader.next(batch: 2, inputs: &inputs, targets: &targets)
            for row in 0..<2 {
                for i in 0..<8 { XCTAssertEqual(targets[row * 8 + i], inputs[row * 8 + i] + 1) }
                starts.append(inputs[row * 8])
            }
        }
        XCTAssertEqual(Set(starts).count, 10)
        XCTAssertEqual(loader.position, LoaderPosition(epoch: 0, cursor: 10))
        loader.next(batch: 2, inputs: &inputs, targets: &targets)
        XCTAssertEqual(loader.position, LoaderPosition(epoch: 1, cursor: 2))
    }

    /// Two ranks draw disjoint windows that together equal one rank drawing twice as many.
    func testRanksAreDisjointAndMatchSingleRank() throws {
        let tokens = stream(64 * 16 + 1)
        let single = try SequenceLoader(tokens: tokens, seq: 16, seed: 9)
        let rank0 = try SequenceLoader(tokens: tokens, seq: 16, seed: 9, rank: 0, worldSize: 2)
        let rank1 = try SequenceLoader(tokens: tokens, seq: 16, seed: 9, rank: 1, worldSize: 2)
        for _ in 0..<10 {
            var a = [Int32](repeating: 0, count: 3 * 16), b = a, c = a, d = a, t = a
            single.next(batch: 3, inputs: &a, targets: &t)
            single.next(batch: 3, inputs: &b, targets: &t)
            rank0.next(batch: 3, inputs: &c, targets: &t)
            rank1.next(batch: 3, inputs: &d, targets: &t)
            XCTAssertEqual(a, c)
            XCTAssertEqual(b, d)
            XCTAssertNotEqual(c, d)
        }
        XCTAssertEqual(rank0.position, rank1.position)
        XCTAssertEqual(rank0.position, single.position)
    }

    /// A loader created at a saved position continues with exactly the next batch.
    func testResumeFromPosition() throws {
        let tokens = stream(50 * 8 + 1)
        let a = try SequenceLoader(tokens: tokens, seq: 8, seed: 4)
        var x = [Int32](repeating: 0, count: 24), y = x
        for _ in 0..<20 { a.next(batch: 3, inputs: &x, targets: &y) }  // crosses an epoch
        let b = try SequenceLoader(tokens: tokens, seq: 8, seed: 4, position: a.position)
        var x2 = x, y2 = y
        for _ in 0..<7 {
            a.next(batch: 3, inputs: &x, targets: &y)
            b.next(batch: 3, inputs: &x2, targets: &y2)
            XCTAssertEqual(x, x2)
            XCTAssertEqual(y, y2)
        }
    }

    func testTooLittleDataIsAnError() {
        XCTAssertThrowsError(try SequenceLoader(tokens: stream(5), seq: 8, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("fewer than one sequence"), "\(error)")
        }
    }
}

final class CorpusTests: XCTestCase {
    func testBundledSampleLoads() throws {
        let corpus = try TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())
        XCTAssertEqual(corpus.files.count, 7)
        XCTAssertGreaterThan(corpus.train.count, 700_000)
        XCTAssertGreaterThan(corpus.valid.count, 30_000)
        XCTAssertEqual(corpus.files, corpus.files.sorted())
    }

    func testBadPathsNameTheFile() throws {
        XCTAssertThrowsError(try TextCorpus(path: "/no/such/folder", tokenizer: ByteTokenizer())) { error in
            XCTAssertTrue("\(error)".contains("/no/such/folder") && "\(error)".contains("does not exist"), "\(error)")
        }
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        XCTAssertThrowsError(try TextCorpus(path: folder, tokenizer: ByteTokenizer())) { error in
            XCTAssertTrue("\(error)".contains("no .txt files"), "\(error)")
        }
        _ = FileManager.default.createFile(atPath: folder + "/empty.txt", contents: Data())
        XCTAssertThrowsError(try TextCorpus(path: folder, tokenizer: ByteTokenizer())) { error in
            XCTAssertTrue("\(error)".contains("contains no text"), "\(error)")
        }
    }

    func testBinaryFileIsNamed() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Data("fine\n".utf8).write(to: URL(fileURLWithPath: folder + "/a.txt"))
        try Data([0x50, 0x4B, 0x03, 0x04, 0x00, 0x00]).write(to: URL(fileURLWithPath: folder + "/b.txt"))
        XCTAssertThrowsError(try TextCorpus(path: folder, tokenizer: ByteTokenizer())) { error in
            XCTAssertTrue("\(error)".contains("b.txt: looks like binary data"), "\(error)")
        }
    }

    func testByteTokenizerRoundTrip() {
        let tokenizer = ByteTokenizer()
        let text = "To be, or not to be: ça, 東京 🎭"
        XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text)
        XCTAssertEqual(tokenizer.decode(tokenizer.encode(text) + [tokenizer.endOfText]), text)
    }
}
