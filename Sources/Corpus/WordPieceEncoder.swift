import Foundation

/// One thread's WordPiece encoder: normalization and pre-tokenization in one pass over the
/// text's scalars, then greedy longest-match per word, with a cache of encoded words. Not
/// thread-safe; make one per thread (`WordPieceTokenizer.makeEncoder`).
final class WordPieceEncoder: PieceEncoder {
    private let tokenizer: WordPieceTokenizer
    private let initial: ByteStringTable.Reader, continuation: ByteStringTable.Reader
    /// What a character becomes: nothing, a word boundary, a word of its own, or part of a word.
    private enum Kind: UInt8 { case dropped, space, isolated, letter }
    /// ASCII: kind and the byte it becomes (lowercased when the model asks).
    private var ascii: [(kind: Kind, byte: UInt8)] = []
    /// Other scalars, looked up once: dropped, or the scalars normalization makes with their
    /// pre-tokenizer kinds, and whether the scalar is a CJK ideograph (a word of its own).
    private struct Normalized { var dropped: Bool; var chinese: Bool; var scalars: [(value: UInt32, kind: Kind)] }
    private var others: [UInt32: Normalized] = [:]
    private var word: [UInt8] = []
    private var wordCharacters = 0
    private let cache = ByteStringTable(capacity: 1 << 14)
    private let cacheLimit = 1 << 17

    init(_ tokenizer: WordPieceTokenizer) {
        self.tokenizer = tokenizer
        initial = tokenizer.initial.reader
        continuation = tokenizer.continuation.reader
        let n = tokenizer.normalization
        ascii = (0..<128).map { c in
            let byte = UInt8(c)
            let whitespace = c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D
            if n.cleanText {
                if whitespace { return (.space, 0x20) }
                if c < 0x20 || c == 0x7F { return (.dropped, 0) }   // control characters (Cc), NUL included
            } else if whitespace || c == 0x0B || c == 0x0C {
                return (.space, byte)
            }
            if WordPieceEncoder.isPunctuation(Unicode.Scalar(byte)) { return (.isolated, byte) }
            if n.lowercase && byte >= 0x41 && byte <= 0x5A { return (.letter, byte + 32) }
            return (.letter, byte)
        }
    }

    func encode(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b < 0x80 {
                let (kind, mapped) = ascii[Int(b)]
                switch kind {
                case .dropped: break
                case .space: flush(into: &out)
                case .isolated: flush(into: &out); append(UInt32(mapped)); flush(into: &out)
                case .letter: word.append(mapped); wordCharacters += 1
                }
                i += 1
                continue
            }
            let (value, length) = WordPieceEncoder.decodeScalar(bytes, at: i)
            i += length
            let normalized = lookUp(value)
            if normalized.dropped { continue }
            if normalized.chinese { flush(into: &out) }
            for (scalar, kind) in normalized.scalars {
                switch kind {
                case .dropped: break
                case .space: flush(into: &out)
                case .isolated: flush(into: &out); append(scalar); flush(into: &out)
                case .letter: append(scalar)
                }
            }
            if normalized.chinese { flush(into: &out) }
        }
        flush(into: &out)
    }

    /// Appends a scalar's UTF-8 bytes to the word.
    private func append(_ s: UInt32) {
        if s < 0x80 {
            word.append(UInt8(s))
        } else if s < 0x800 {
            word.append(UInt8(0xC0 | s >> 6)); word.append(UInt8(0x80 | s & 0x3F))
        } else if s < 0x10000 {
            word.append(UInt8(0xE0 | s >> 12)); word.append(UInt8(0x80 | s >> 6 & 0x3F)); word.append(UInt8(0x80 | s & 0x3F))
        } else {
            word.append(UInt8(0xF0 | s >> 18)); word.append(UInt8(0x80 | s >> 12 & 0x3F))
            word.append(UInt8(0x80 | s >> 6 & 0x3F)); word.append(UInt8(0x80 | s & 0x3F))
        }
        wordCharacters += 1
    }

    /// Encodes the word collected so far.
    private func flush(into out: inout [Int32]) {
        guard !word.isEmpty else { return }
        defer { word.removeAll(keepingCapacity: true); wordCharacters = 0 }
        if wordCharacters > tokenizer.maxInputCharsPerWord { out.append(tokenizer.unknown); return }
        word.withUnsafeBufferPointer { w in
            let p = w.baseAddress!, n = w.count
            let h = hashBytes(p, n)
            if cache.appendValue(p, n, hash: h, to: &out) { return }
            let first = out.count
            var start = 0
            while start < n {
                let table = start == 0 ? initial : continuation
                var end = min(n, start + tokenizer.longestToken)
                var found: Int32 = -1
                while end > start {
                    while end < n && p[end] & 0xC0 == 0x80 { end -= 1 }   // back to a character boundary
                    let s = table.find(p + start, end - start, hashBytes(p + start, end - start))
                    if s >= 0 { found = table.value(at: s); break }
                    end -= 1
                }
                if found < 0 {
                    out.removeSubrange(first...)
                    out.append(tokenizer.unknown)
                    break
                }
                out.append(found)
                start = end
            }
            if cache.count >= cacheLimit { cache.clear() }
            out.withUnsafeBufferPointer { cache.insert(p, n, hash: h, tokens: UnsafeBufferPointer(rebasing: $0[first...])) }
        }
    }

    private func lookUp(_ value: UInt32) -> Normalized {
        if let known = others[value] { return known }
        let n = tokenizer.normalization
        let scalar = Unicode.Scalar(value)!
        var result = Normalized(dropped: false, chinese: false, scalars: [])
        if n.cleanText && (value == 0xFFFD || WordPieceEncoder.isControl(scalar)) {
            result.dropped = true
        } else if n.cleanText && scalar.properties.isWhitespace {
            result.scalars = [(0x20, .space)]
        } else {
            result.chinese = n.handleChineseChars && WordPieceEncoder.isChinese(value)
            var scalars = [scalar]
            if n.strips {
                // U+11938 (Unicode 13) has no decomposition in Hugging Face's NFD tables.
                let decomposed = value == 0x11938 ? [scalar] : Array(String(scalar).decomposedStringWithCanonicalMapping.unicodeScalars)
                scalars = decomposed.filter { !WordPieceEncoder.isNonspacingMark($0) }
            }
            if n.lowercase { scalars = scalars.flatMap { $0.properties.lowercaseMapping.unicodeScalars } }
            result.scalars = scalars.map { s in
                let kind: Kind = s.properties.isWhitespace ? .space : WordPieceEncoder.isPunctuation(s) ? .isolated : .letter
                return (s.value, kind)
            }
        }
        others[value] = result
        return result
    }

    // MARK: character classes (BertNormalizer / BertPreTokenizer)

    /// Hugging Face `tokenizers` classifies characters with the Unicode 8.0 tables of its
    /// `unicode_categories` crate (checked against it on every code point: only these rules and
    /// the two exceptions below reproduce it). A character assigned later is to it an unassigned
    /// one, which it neither drops nor splits off, whatever its category today.
    static func unicode8Category(_ s: Unicode.Scalar) -> Unicode.GeneralCategory? {
        guard let age = s.properties.age, age.major < 8 || (age.major == 8 && age.minor == 0) else { return nil }
        return s.properties.generalCategory
    }

    /// A non-spacing mark (Mn) as Unicode 8.0 had them, which accent stripping drops: four
    /// characters have become Mn since and two have left it.
    static func isNonspacingMark(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x1734, 0x1171E: return true
        case 0x1885, 0x1886, 0xA9BD, 0x111C9: return false
        default: return unicode8Category(s) == .nonspacingMark
        }
    }

    /// Control characters BertNormalizer drops: categories Cc, Cf and Co, except tab and line
    /// breaks (counted as whitespace). Unassigned characters are kept.
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch unicode8Category(s) {
        case .control?, .format?, .privateUse?, .surrogate?: return true
        default: return false
        }
    }

    /// ASCII punctuation (which counts $ + < = > ^ ` | ~) or a Unicode 8.0 punctuation category
    /// (U+166D and U+111C9 were punctuation then and are not now).
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        if v == 0x166D || v == 0x111C9 { return true }
        switch unicode8Category(s) {
        case .connectorPunctuation?, .dashPunctuation?, .closePunctuation?, .finalPunctuation?, .initialPunctuation?,
             .otherPunctuation?, .openPunctuation?: return true
        default: return false
        }
    }

    /// The CJK ideograph blocks BERT sets apart.
    static func isChinese(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B920...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    /// The scalar starting at byte `i` of valid UTF-8 and its length.
    static func decodeScalar(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32, Int) {
        let b0 = UInt32(b[i])
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3) }
        return ((b0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F), 4)
    }
}
