import Corpus
import Foundation
import Tensors
import TestSupport
import XCTest

final class ShardTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("elle-shards") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func write(_ tokens: [Int32], vocabulary: Int, _ name: String) throws -> String {
        let path = folder + "/" + name
        _ = try tokens.withUnsafeBufferPointer { try Shard.write($0, vocabularySize: vocabulary, to: path) }
        return path
    }

    func testRoundTripUInt16AndUInt32() throws {
        let small = randomTokens(1001, vocab: 50281, seed: 1)
        let large = randomTokens(999, vocab: 70000, seed: 2) + [69999]
        let a = try Shard(path: try write(small, vocabulary: 50281, "a.bin"))
        let b = try Shard(path: try write(large, vocabulary: 70000, "b.bin"))
        XCTAssertEqual(a.tokenBytes, 2)
        XCTAssertEqual(b.tokenBytes, 4)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: a.path)[.size] as? Int, 48 + 2 * 1001)
        XCTAssertEqual(TokenStream(shards: [a]).toArray(), small)
        XCTAssertEqual(TokenStream(shards: [b]).toArray(), large)
        XCTAssertEqual(a.vocabularySize, 50281)
        XCTAssertThrowsError(try write([5, 70000], vocabulary: 70000, "c.bin")) { error in
            XCTAssertTrue("\(error)".contains("outside the vocabulary"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/c.bin"))
    }

    /// Truncation, a bad magic, a corrupt header or corrupt tokens each give an error naming the file.
    func testDamagedShardsNameTheFile() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: try write(randomTokens(500, vocab: 1000, seed: 3), vocabulary: 1000, "good.bin")))
        func damaged(_ name: String, _ change: (inout Data) -> Void, expect: String) throws {
            var data = good
            change(&data)
            let path = folder + "/" + name
            try data.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Shard(path: path), name) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(expect), "\(name): \(error)")
            }
        }
        try damaged("short.bin", { $0 = $0.prefix(20) }, expect: "shorter than the 48-byte shard header")
        try damaged("cut.bin", { $0 = $0.prefix($0.count - 7) }, expect: "truncated")
        try damaged("magic.bin", { $0[0] = UInt8(ascii: "X") }, expect: "bad magic")
        try damaged("header.bin", { $0[17] ^= 0x01 }, expect: "corrupt shard header")
        try damaged("tokens.bin", { $0[100] ^= 0x40 }, expect: "corrupt tokens")
        try damaged("empty.bin", { $0 = Data() }, expect: "shorter than")
        XCTAssertThrowsError(try Shard(path: folder + "/missing.bin")) { error in
            XCTAssertTrue("\(error)".contains("missing.bin") && "\(error)".contains("does not exist"), "\(error)")
        }
    }

    /// The loader over mapped shards gives exactly the batches of the loader over the same tokens
    /// in memory; windows never straddle shards; every window once per epoch.
    func testLoaderOverShardsMatchesMemory() throws {
        let tokens = randomTokens(16 * 40 + 1, vocab: 3000, seed: 4)
        let shard = try Shard(path: try write(tokens, vocabulary: 3000, "one.bin"))
        let mapped = try SequenceLoader(stream: TokenStream(shards: [shard]), seq: 16, seed: 5, rank: 1, worldSize: 2)
        let memory = try SequenceLoader(tokens: Buffer(tokens), seq: 16, seed: 5, rank: 1, worldSize: 2)
        var x1 = [Int32](repeating: 0, count: 3 * 16), y1 = x1, x2 = x1, y2 = x1
        for _ in 0..<20 {
            mapped.next(batch: 3, inputs: &x1, targets: &y1)
            memory.next(batch: 3, inputs: &x2, targets: &y2)
            XCTAssertEqual(x1, x2)
            XCTAssertEqual(y1, y2)
        }
        XCTAssertEqual(mapped.position, memory.position)

        // Three shards of 33, 50 and 5 tokens at T = 8: 4 + 6 + 0 windows.
        let parts = [Array(tokens[0..<33]), Array(tokens[33..<83]), Array(tokens[83..<88])]
        let shards = try parts.enumerated().map { try Shard(path: try write($1, vocabulary: 3000, "p\($0).bin")) }
        let stream = TokenStream(shards: shards)
        XCTAssertEqual(stream.windowCount(seq: 8), 10)
        let loader = try SequenceLoader(stream: stream, seq: 8, seed: 6)
        var seen = Set<[Int32]>()
        var x = [Int32](repeating: 0, count: 16), y = x
        for _ in 0..<5 {
            loader.next(batch: 2, inputs: &x, targets: &y)
            for row in 0..<2 {
                let input = Array(x[(row * 8)..<(row * 8 + 8)]), target = Array(y[(row * 8)..<(row * 8 + 8)])
                XCTAssertEqual(Array(input.dropFirst()), Array(target.dropLast()))
                XCTAssertTrue(parts.contains { part in
                    (0..<max(0, (part.count - 1) / 8)).contains { w in Array(part[(w * 8)...(w * 8 + 8)]) == input + [target.last!] }
                }, "a window is not inside one shard")
                seen.insert(input)
            }
        }
        XCTAssertEqual(seen.count, 10)
    }
}

final class TextCheckTests: XCTestCase {
    func check(_ bytes: [UInt8]) throws { try bytes.withUnsafeBufferPointer { try TextCheck.validate($0, path: "f.txt") } }

    func testValidTextPasses() throws {
        try check(Array("plain, ça, 東京, 🎭, e\u{301}\n".utf8))
        try check([])
    }

    func testInvalidUTF8AndBinaryAreNamed() {
        let cases: [([UInt8], String)] = [
            ([0x61, 0xFF, 0x62], "byte 0xFF at offset 1"),
            ([0x61, 0x62, 0xC3], "byte 0xC3 at offset 2"),          // truncated sequence at the end
            ([0xE0, 0x80, 0x80], "byte 0xE0 at offset 0"),          // overlong
            ([0xED, 0xA0, 0x80], "byte 0xED at offset 0"),          // UTF-16 surrogate
            ([0x68, 0x69, 0x00, 0x01], "binary data, not text (NUL byte at offset 2)"),
        ]
        for (bytes, expected) in cases {
            XCTAssertThrowsError(try check(bytes)) { error in
                XCTAssertTrue("\(error)".hasPrefix("f.txt: ") && "\(error)".contains(expected), "\(error)")
            }
        }
    }
}
