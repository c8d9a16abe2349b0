import Corpus
import Foundation
import TestSupport
import XCTest

/// Masked-LM sequences: layout, the 15% / 80-10-10 statistics, padding, determinism by key.
final class MaskedLMTests: XCTestCase {
    // Ordinary tokens 0..<1000, then pad, mask, bos, a prompt.
    let settings = MaskedLM(beginToken: 1002, maskToken: 1001, padToken: 1000, ordinaryTokens: 1000)

    /// B windows of T ordinary tokens (window r holds r * 10_000 + position, mod 1000 kept
    /// recognizable by position), masked.
    func batch(_ m: MaskedLM, rows b: Int, seq t: Int, key: UInt64) -> (original: [Int32], tokens: [Int32], targets: [Int32]) {
        let original = (0..<(b * t)).map { Int32(($0 * 7919) % 1000) }
        var tokens = original, targets = [Int32](repeating: 99, count: b * t)
        m.makeSequences(tokens: &tokens, targets: &targets, batch: b, seq: t, key: key)
        return (original, tokens, targets)
    }

    func testSequenceLayoutAndTargets() {
        let t = 16
        var withPrompt = settings
        withPrompt.prompt = 1003
        for m in [settings, withPrompt] {
            let k = m.prefixLength
            let (original, tokens, targets) = batch(m, rows: 3, seq: t, key: 5)
            for row in 0..<3 {
                // The unmasked sequence: <bos>, [prompt], then the window's first T - k tokens.
                var expected = [m.beginToken] + (m.prompt.map { [$0] } ?? [])
                expected += original[(row * t)..<(row * t + t - k)]
                for i in 0..<t {
                    let x = tokens[row * t + i], y = targets[row * t + i]
                    if y < 0 {
                        XCTAssertEqual(y, -1)
                        XCTAssertEqual(x, expected[i], "unchosen position \(i) keeps its token")
                    } else {
                        XCTAssertEqual(y, expected[i], "the target is the original token")
                        XCTAssertTrue(x == m.maskToken || x == y || (x >= 0 && x < m.ordinaryTokens), "\(x)")
                    }
                }
                // floor(0.15 * 16 + u) is 2 or 3.
                let chosen = targets[(row * t)..<((row + 1) * t)].filter { $0 >= 0 }.count
                XCTAssertTrue(chosen == 2 || chosen == 3, "\(chosen) chosen")
            }
        }
    }

    /// Over many sequences: 15% chosen on average (exactly floor or ceil of 0.15 n per sequence),
    /// 80% / 10% / 10% of them mask / random / kept, random ids uniform over ordinary tokens only,
    /// the begin token chosen as often as any position, padding never.
    func testStatistics() {
        let t = 128, b = 400
        var counts = [Int](repeating: 0, count: 4) // chosen, mask, random (changed), kept
        var firstChosen = 0, randomIds = Set<Int32>()
        var padded = settings
        padded.prompt = 1003
        // Rows end in 28 pads: 100 real positions each.
        var original = (0..<(b * t)).map { Int32(($0 * 7919) % 1000) }
        for row in 0..<b { for i in 98..<126 { original[row * t + i] = 1000 } }
        var tokens = original, targets = [Int32](repeating: 0, count: b * t)
        padded.makeSequences(tokens: &tokens, targets: &targets, batch: b, seq: t, key: 11)
        for row in 0..<b {
            var chosenInRow = 0
            for i in 0..<t {
                let y = targets[row * t + i], x = tokens[row * t + i]
                if x == 1000 { XCTAssertEqual(y, -1, "padding is never chosen") }
                guard y >= 0 else { continue }
                chosenInRow += 1
                counts[0] += 1
                if i == 0 { firstChosen += 1 }
                if x == settings.maskToken { counts[1] += 1 } else if x != y { counts[2] += 1; randomIds.insert(x) } else { counts[3] += 1 }
            }
            XCTAssertTrue(chosenInRow == 15 || chosenInRow == 16, "\(chosenInRow) of 100 real positions")
        }
        let chosen = Double(counts[0])
        print("masked LM statistics: \(counts[0]) chosen of \(b * 100) real positions; mask \(Double(counts[1]) / chosen), random \(Double(counts[2]) / chosen), kept \(Double(counts[3]) / chosen); <bos> chosen in \(firstChosen) of \(b) rows")
        XCTAssertEqual(chosen / Double(b * 100), 0.15, accuracy: 0.005)
        XCTAssertEqual(Double(counts[1]) / chosen, 0.8, accuracy: 0.02)
        // A random draw may hit the original token (1 in 1000): counted as kept.
        XCTAssertEqual(Double(counts[2]) / chosen, 0.1, accuracy: 0.015)
        XCTAssertEqual(Double(counts[3]) / chosen, 0.1, accuracy: 0.015)
        XCTAssertTrue(randomIds.allSatisfy { $0 >= 0 && $0 < 1000 })
        XCTAssertGreaterThan(randomIds.count, 400, "random replacements spread over the ordinary tokens")
        XCTAssertEqual(Double(firstChosen) / Double(b), 0.15, accuracy: 0.06, "the begin token is masked like any position")
    }

    /// The same key gives the same batch; another key another one; each row depends only on
    /// (key, row), so a batch of 2 is the first 2 rows of a batch of 4.
    func testDeterministicByKeyAndRow() {
        let a = batch(settings, rows: 4, seq: 32, key: 1), again = batch(settings, rows: 4, seq: 32, key: 1)
        let other = batch(settings, rows: 4, seq: 32, key: 2), half = batch(settings, rows: 2, seq: 32, key: 1)
        XCTAssertEqual(a.tokens, again.tokens)
        XCTAssertEqual(a.targets, again.targets)
        XCTAssertNotEqual(a.targets, other.targets)
        XCTAssertEqual(Array(a.targets.prefix(64)), half.targets)
        XCTAssertEqual(Array(a.tokens.prefix(64)), half.tokens)
    }

    func testCodableAndValidation() throws {
        var m = settings
        m.prompt = 1003
        XCTAssertEqual(try JSONDecoder().decode(MaskedLM.self, from: JSONEncoder().encode(m)), m)
        XCTAssertNoThrow(try m.validate(vocab: 1004))
        XCTAssertThrowsError(try m.validate(vocab: 1003)) { XCTAssertTrue("\($0)".contains("prompt"), "\($0)") }
        m.maskTokenShare = 0.95
        XCTAssertThrowsError(try m.validate(vocab: 1004)) { XCTAssertTrue("\($0)".contains("maskTokenShare"), "\($0)") }
    }
}
