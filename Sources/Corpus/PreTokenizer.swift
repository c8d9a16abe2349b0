/// GPT-2's pre-tokenization, written out by hand over UTF-8 so it runs at memory speed.
///
/// It reproduces the regex (as tiktoken runs it, with Unicode `\p{L}`, `\p{N}` and `\s` =
/// White_Space):
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// At each piece start: a contraction; else an optional U+0020 then a maximal run of one class
/// (letters, numbers, or "other"); else a whitespace run, which at the end of the text is taken
/// whole, and otherwise gives up its last character (so that a final space can lead the next
/// word) unless it is a single character. Bytes that are not valid UTF-8 count as "other", one
/// byte each, so any byte string splits without error (and decodes back to itself).
public enum PreTokenizer {
    /// Scalar classes of the regex.
    @usableFromInline static let letter: UInt8 = 0
    @usableFromInline static let number: UInt8 = 1
    @usableFromInline static let whitespace: UInt8 = 2
    @usableFromInline static let other: UInt8 = 3

    /// Class of every scalar in the Basic Multilingual Plane (built once, 64 KiB, never freed;
    /// a raw pointer so threads reading it touch no shared reference count).
    nonisolated(unsafe) static let bmpClasses: UnsafeMutablePointer<UInt8> = {
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
        for v in 0..<0x10000 { table[v] = classify(UInt32(v)) }
        return table
    }()

    /// The regex class of a scalar value (surrogates and non-scalars are "other").
    public static func classify(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return other }
        let properties = scalar.properties
        if properties.isWhitespace { return whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return other
        }
    }

    /// Class and byte length of the scalar at `p[i]` (i < n). Invalid UTF-8: ("other", 1).
    @inline(__always) @usableFromInline
    static func scalarClass(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int, _ bmp: UnsafePointer<UInt8>) -> (UInt8, Int) {
        let b0 = UInt32(p[i])
        if b0 < 0x80 { return (bmp[Int(b0)], 1) }
        if b0 < 0xC2 { return (other, 1) }
        if b0 < 0xE0 {
            guard i + 1 < n else { return (other, 1) }
            let b1 = UInt32(p[i + 1])
            guard b1 & 0xC0 == 0x80 else { return (other, 1) }
            return (bmp[Int((b0 & 0x1F) << 6 | (b1 & 0x3F))], 2)
        }
        if b0 < 0xF0 {
            guard i + 2 < n else { return (other, 1) }
            let b1 = UInt32(p[i + 1]), b2 = UInt32(p[i + 2])
            guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80,
                  b0 != 0xE0 || b1 >= 0xA0, b0 != 0xED || b1 < 0xA0 else { return (other, 1) }
            return (bmp[Int((b0 & 0x0F) << 12 | (b1 & 0x3F) << 6 | (b2 & 0x3F))], 3)
        }
        if b0 < 0xF5 {
            guard i + 3 < n else { return (other, 1) }
            let b1 = UInt32(p[i + 1]), b2 = UInt32(p[i + 2]), b3 = UInt32(p[i + 3])
            guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80, b3 & 0xC0 == 0x80,
                  b0 != 0xF0 || b1 >= 0x90, b0 != 0xF4 || b1 < 0x90 else { return (other, 1) }
            let v = (b0 & 0x07) << 18 | (b1 & 0x3F) << 12 | (b2 & 0x3F) << 6 | (b3 & 0x3F)
            return (classify(v), 4)
        }
        return (other, 1)
    }

    /// Calls `body(start, end)` for each piece of `p[0..<n]`, in order; the pieces tile the input.
    @inline(__always)
    public static func split(_ p: UnsafePointer<UInt8>, _ n: Int, _ body: (Int, Int) -> Void) {
        do {
            let bmp = UnsafePointer(bmpClasses)
            var i = 0
            while i < n {
                let start = i
                let c0 = p[i]
                if c0 == 0x27 && i + 1 < n {  // ' contractions: 's 't 'm 'd 'll 've 're
                    let c1 = p[i + 1]
                    if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 {
                        body(i, i + 2); i += 2; continue
                    }
                    if i + 2 < n {
                        let c2 = p[i + 2]
                        if (c1 == 0x6C && c2 == 0x6C) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x72 && c2 == 0x65) {
                            body(i, i + 3); i += 3; continue
                        }
                    }
                }
                var j = c0 == 0x20 ? i + 1 : i
                if j < n {
                    let (cls, length) = scalarClass(p, j, n, bmp)
                    if cls != whitespace {  // ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+`
                        j += length
                        while j < n {
                            let (next, nextLength) = scalarClass(p, j, n, bmp)
                            if next != cls { break }
                            j += nextLength
                        }
                        body(start, j); i = j; continue
                    }
                }
                // A whitespace run starting at i.
                var end = i, last = i
                while end < n {
                    let (cls, length) = scalarClass(p, end, n, bmp)
                    if cls != whitespace { break }
                    last = end
                    end += length
                }
                if end == n {
                    body(i, n); i = n                  // `\s+(?!\S)` at the end of the text
                } else if last > i {
                    body(i, last); i = last            // `\s+(?!\S)` backs off one character
                } else {
                    body(i, end); i = end              // `\s+`: a single character
                }
            }
        }
    }

    /// Offsets where `p[0..<n]` may be cut into independently pre-tokenized parts with exactly the
    /// pieces of the whole: just after the newline of "X\nY", or between the newlines of
    /// "X\n\nY", where X and Y are non-whitespace ASCII (a longer whitespace run would be split
    /// differently). Returns at most `parts - 1` cuts, near even sizes.
    public static func safeCuts(_ p: UnsafePointer<UInt8>, _ n: Int, parts: Int) -> [Int] {
        guard parts > 1, n > 0 else { return [] }
        var cuts: [Int] = []
        let target = n / parts
        var previous = 0
        // Past this offset the text has no newline cut (found once, so a text without newlines is
        // scanned once, not once per part).
        var noNewlineFrom = n
        for k in 1..<parts {
            let from = max(previous + 1, k * target, 1)
            var found = from < noNewlineFrom ? newlineCut(p, n, from: from) : -1
            if found < 0 {
                noNewlineFrom = min(noNewlineFrom, from)
                // Text without (usable) newlines, e.g. a domain that is one long line: cut before
                // the space of "letter, space, letter", where the pre-tokenizer always ends a
                // word and starts " word".
                found = spaceCut(p, n, from: from)
            }
            if found < 0 { break }
            cuts.append(found)
            previous = found
        }
        return cuts
    }

    /// The first cut after a newline at or after `from`: "\n" between non-space bytes, or between
    /// two newlines followed by a non-space (-1 when there is none).
    static func newlineCut(_ p: UnsafePointer<UInt8>, _ n: Int, from: Int) -> Int {
        var i = from
        while i < n - 2 {
            if p[i] == 0x0A && !isSpaceByte(p[i - 1]) {
                if !isSpaceByte(p[i + 1]) { return i + 1 }
                if p[i + 1] == 0x0A && !isSpaceByte(p[i + 2]) { return i + 1 }
            }
            i += 1
        }
        return -1
    }

    /// The first offset at or after `from` holding a space between two ASCII letters (-1 when
    /// there is none).
    static func spaceCut(_ p: UnsafePointer<UInt8>, _ n: Int, from: Int) -> Int {
        @inline(__always) func letter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
        var i = max(from, 1)
        while i < n - 1 {
            if p[i] == 0x20 && letter(p[i - 1]) && letter(p[i + 1]) { return i }
            i += 1
        }
        return -1
    }

    /// Conservative: true for ASCII whitespace and for any byte of a multi-byte scalar (which may
    /// be Unicode whitespace such as U+00A0), so cuts only happen between plain ASCII characters.
    @inline(__always) static func isSpaceByte(_ b: UInt8) -> Bool {
        b >= 0x80 || b == 0x20 || (b >= 0x09 && b <= 0x0D)
    }
}
