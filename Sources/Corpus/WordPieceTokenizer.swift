import Foundation

/// WordPiece, BERT's tokenizer, as Hugging Face `tokenizers` runs it (BertNormalizer,
/// BertPreTokenizer, WordPiece model): text is cleaned (control characters dropped, whitespace made
/// spaces), CJK ideographs set apart, accents stripped (NFD, non-spacing marks dropped) and
/// letters lowercased when the model asks; it is split at whitespace and around every punctuation
/// character; each word becomes the longest vocabulary token that starts it, then the longest
/// `##` continuation of the rest, and so on; a word with more than `maxInputCharsPerWord`
/// characters, or one that cannot be covered, is the unknown token.
///
/// Ids: the vocabulary's own ids `0..<ordinaryCount` (vocab.txt's line numbers), its specials in
/// place (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`: pad, unknown, begin of sequence,
/// end of text, mask); then elle's prompt tokens (`<|domain:NAME|>` and 16 spares, as
/// `BPETokenizer` has them), so a model's rows keep their tokens and grow by the prompts. Special
/// tokens are inserted by id only: text that spells `[MASK]` is encoded as text.
public final class WordPieceTokenizer: SubwordTokenizer, @unchecked Sendable {
    /// BertNormalizer's settings.
    public struct Normalization: Equatable, Sendable {
        public var cleanText = true
        public var handleChineseChars = true
        /// nil: strip accents when lowercasing (BERT's default).
        public var stripAccents: Bool? = nil
        public var lowercase = true
        public init() {}
        var strips: Bool { stripAccents ?? lowercase }
    }

    public static let continuingPrefix = "##"
    /// The vocabulary's tokens by id.
    public let tokens: [String]
    /// elle's specials after them: domain prompts and spares (`BPETokenizer`'s names).
    public private(set) var specials: [String]
    /// Vocabulary tokens Hugging Face treats as special (never split out of text by elle).
    public let vocabularySpecials: [String]
    public let normalization: Normalization
    public let maxInputCharsPerWord: Int
    public let unknown: Int32
    public let pad: Int32, mask: Int32, beginOfSequence: Int32, endOfText: Int32
    /// Word-initial tokens and `##` continuations (without the prefix), by UTF-8 bytes.
    let initial: ByteStringTable, continuation: ByteStringTable
    /// Longest token in bytes (longer candidates are never looked up).
    let longestToken: Int

    public var ordinaryCount: Int { tokens.count }
    public var vocabularySize: Int { tokens.count + specials.count }

    /// `roles` names the unknown, pad, mask, begin (CLS) and end (SEP) tokens.
    public init(tokens: [String], specials: [String] = (0..<BPETokenizer.sparePrompts).map(BPETokenizer.spareName),
                vocabularySpecials: [String] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                normalization: Normalization = Normalization(), maxInputCharsPerWord: Int = 100,
                roles: (unknown: String, pad: String, mask: String, begin: String, end: String) = ("[UNK]", "[PAD]", "[MASK]", "[CLS]", "[SEP]"),
                path: String = "tokenizer") throws {
        var ids: [String: Int32] = [:]
        for (id, token) in tokens.enumerated() { ids[token] = Int32(id) }  // a repeated token keeps its last id, as Hugging Face's map does
        func role(_ name: String, _ what: String) throws -> Int32 {
            guard let id = ids[name] else { throw DataError(path: path, "has no \(name) token (\(what)) in its vocabulary") }
            return id
        }
        unknown = try role(roles.unknown, "unknown")
        pad = try role(roles.pad, "padding")
        mask = try role(roles.mask, "mask")
        beginOfSequence = try role(roles.begin, "begin of sequence")
        endOfText = try role(roles.end, "separator, elle's end of text")
        guard Set(specials).count == specials.count, !specials.contains(where: { ids[$0] != nil }) else {
            throw DataError(path: path, "special tokens repeat a name")
        }
        self.tokens = tokens
        self.specials = specials
        self.vocabularySpecials = vocabularySpecials
        self.normalization = normalization
        self.maxInputCharsPerWord = maxInputCharsPerWord
        initial = ByteStringTable(capacity: ids.count)
        continuation = ByteStringTable(capacity: ids.count)
        var longest = 1
        for (token, id) in ids {
            // Bytes, not Characters: in "##ा" the mark joins the second # into one Character.
            var bytes = Array(token.utf8)
            if bytes.starts(with: WordPieceTokenizer.continuingPrefix.utf8) {
                bytes.removeFirst(WordPieceTokenizer.continuingPrefix.utf8.count)
                if !bytes.isEmpty { continuation.insert(bytes, token: id) }
                longest = max(longest, bytes.count)
            }
            // Hugging Face looks a word's first piece up as it is: "##x" can also start a word.
            initial.insert(Array(token.utf8), token: id)
            longest = max(longest, token.utf8.count)
        }
        longestToken = longest
    }

    // MARK: specials

    public var specialTokens: [(id: Int, name: String)] {
        vocabularySpecials.compactMap { name in tokens.lastIndex(of: name).map { ($0, name) } }
            + specials.enumerated().map { (tokens.count + $0, $1) }
    }

    public func promptId(domain: String) -> Int32? {
        specials.firstIndex(of: BPETokenizer.promptName(domain)).map { Int32(tokens.count + $0) }
    }

    public var promptDomains: [String] { DomainPrompts.domains(in: specials) }

    @discardableResult
    public func assignPrompt(domain: String) throws -> Int32 {
        if let id = promptId(domain: domain) { return id }
        return Int32(tokens.count + (try DomainPrompts.assign(domain, in: &specials)))
    }

    public func tokenText(_ id: Int32) -> String {
        let i = Int(id)
        if i >= 0 && i < tokens.count { return tokens[i] }
        if i >= tokens.count && i < vocabularySize { return specials[i - tokens.count] }
        return "<|invalid:\(id)|>"
    }

    // MARK: encode / decode

    public func makeEncoder() -> PieceEncoder { WordPieceEncoder(self) }

    public func encode(_ text: String) -> [Int32] { encode(bytes: Array(text.utf8)) }

    public func encode(bytes: [UInt8]) -> [Int32] {
        var out: [Int32] = []
        bytes.withUnsafeBufferPointer { WordPieceEncoder(self).encode($0, into: &out) }
        return out
    }

    /// The vocabulary's tokens joined as BERT's decoder does: `##` pieces glued to the previous
    /// one, others after a space; elle's prompts and the vocabulary's specials left out.
    public func decode(_ ids: [Int32]) -> String {
        var out = ""
        for id in ids where id >= 0 && Int(id) < tokens.count {
            let token = tokens[Int(id)]
            if vocabularySpecials.contains(token) { continue }
            if token.utf8.starts(with: WordPieceTokenizer.continuingPrefix.utf8) {
                out += String(decoding: token.utf8.dropFirst(WordPieceTokenizer.continuingPrefix.utf8.count), as: UTF8.self)
            } else {
                out += out.isEmpty ? token : " " + token
            }
        }
        return out
    }
}
