import Foundation

/// A subword vocabulary with elle's special tokens: byte-level BPE (`BPETokenizer`, elle's own
/// and GPT-2's) or WordPiece (`WordPieceTokenizer`, BERT's). Prepared data, BERT's masking,
/// domain prompts and the Hugging Face interop read a tokenizer through this.
///
/// Every one has end-of-text (after each document), pad, mask and begin-of-sequence ids, and a
/// prompt token per domain (`<|domain:NAME|>`, taken from spare prompts, so adding a domain never
/// changes the vocabulary size). Ids below `ordinaryCount` are the vocabulary's own tokens; a
/// masked LM draws its random replacements from them.
public protocol SubwordTokenizer: Tokenizer, AnyObject {
    var ordinaryCount: Int { get }
    var pad: Int32 { get }
    var mask: Int32 { get }
    var beginOfSequence: Int32 { get }
    /// Special names by id (elle's own and, for WordPiece, those of the vocabulary) for the
    /// Hugging Face files.
    var specialTokens: [(id: Int, name: String)] { get }
    /// The prompt token of a domain, or nil when it has none.
    func promptId(domain: String) -> Int32?
    /// Domains that have prompt tokens, in id order.
    var promptDomains: [String] { get }
    /// Gives `domain` a prompt token (a spare); the vocabulary size is unchanged.
    @discardableResult func assignPrompt(domain: String) throws -> Int32
    /// Printable text of any id.
    func tokenText(_ id: Int32) -> String
    /// An encoder for one thread (it may keep caches).
    func makeEncoder() -> PieceEncoder
    /// Writes the Hugging Face `tokenizer.json` that `load(_:)` reads back, atomically.
    func save(to path: String) throws
}

/// Domain prompt names among a tokenizer's specials (`<|domain:NAME|>`, `<|domain:spare-K|>`),
/// shared by both kinds.
enum DomainPrompts {
    /// Domains that have prompt tokens, in id order.
    static func domains(in specials: [String]) -> [String] {
        specials.compactMap { name in
            guard name.hasPrefix("<|domain:"), !name.hasPrefix("<|domain:spare-") else { return nil }
            return String(name.dropFirst(9).dropLast(2))
        }
    }

    /// Renames the first spare to `domain`'s prompt; returns its index among the specials.
    static func assign(_ domain: String, in specials: inout [String]) throws -> Int {
        guard let spare = specials.firstIndex(where: { $0.hasPrefix("<|domain:spare-") }) else {
            throw DataError(path: "tokenizer", "has no spare domain prompt left for domain \(domain)")
        }
        specials[spare] = BPETokenizer.promptName(domain)
        return spare
    }
}

/// Encodes pieces of text on one thread.
public protocol PieceEncoder: AnyObject {
    /// Appends the ids of `bytes` (UTF-8 text) to `out`.
    func encode(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32])
}

extension BPEEncoder: PieceEncoder {}

/// Reads tokenizer files by what they hold.
public enum TokenizerFile {
    /// A `tokenizer.json` with a byte-level BPE or a WordPiece model, a WordPiece `vocab.txt`, or a
    /// Hugging Face folder holding one of them (tokenizer.json first).
    public static func load(_ path: String) throws -> SubwordTokenizer {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            for name in ["tokenizer.json", "vocab.txt"] where FileManager.default.fileExists(atPath: path + "/" + name) {
                return try load(path + "/" + name)
            }
            throw DataError(path: path, "holds no tokenizer.json or vocab.txt")
        }
        if (path as NSString).pathExtension == "txt" { return try WordPieceTokenizer.loadVocabulary(path) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(path: path, "cannot be read (tokenizer.json)")
        }
        let model = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["model"] as? [String: Any]
        switch model?["type"] as? String {
        case "WordPiece"?: return try WordPieceTokenizer.load(path, data: data)
        case "BPE"?, nil: return try BPETokenizer.load(path)
        case let other?: throw DataError(path: path, "has a \(other) model; elle reads byte-level BPE and WordPiece")
        }
    }
}
