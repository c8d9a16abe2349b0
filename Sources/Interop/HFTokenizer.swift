import Corpus
import Foundation

/// The tokenizer a checkpoint was trained with: elle's byte tokenizer (ids 0-255 the bytes, 256
/// end-of-text), a byte-level BPE or a WordPiece (`docs/DATA.md`).
public enum ModelTokenizer {
    case bytes
    case bpe(BPETokenizer)
    case wordPiece(WordPieceTokenizer)

    public init(_ tokenizer: SubwordTokenizer) {
        if let w = tokenizer as? WordPieceTokenizer { self = .wordPiece(w) } else { self = .bpe(tokenizer as! BPETokenizer) }
    }

    /// The tokenizer a checkpoint names in `options.tokenizer` ("bytes" or a tokenizer.json path).
    public static func load(named name: String) throws -> ModelTokenizer {
        name == "bytes" ? .bytes : ModelTokenizer(try TokenizerFile.load(name))
    }

    /// The BPE or WordPiece tokenizer (nil for bytes).
    public var subword: SubwordTokenizer? {
        switch self {
        case .bytes: return nil
        case .bpe(let t): return t
        case .wordPiece(let t): return t
        }
    }

    public var vocabularySize: Int { subword?.vocabularySize ?? 257 }

    public var endOfText: Int { self.tokenizer.endOfText.asInt }

    public var tokenizer: Tokenizer { subword ?? ByteTokenizer() }

    /// Names of elle's special tokens by id, after the vocabulary's own tokens (end-of-text first
    /// for BPE; a WordPiece's own specials keep their ids among its tokens).
    public var specials: [(id: Int, name: String)] {
        switch self {
        case .bytes: return [(256, BPETokenizer.endOfTextName)]
        case .bpe(let t): return t.specials.enumerated().map { (t.ordinaryCount + $0, $1) }
        case .wordPiece(let t): return t.specials.enumerated().map { (t.ordinaryCount + $0, $1) }
        }
    }

    var pad: Int? { subword?.pad.asInt }

    // MARK: writing

    /// Writes `tokenizer.json` (every special an added token) and `tokenizer_config.json` into
    /// `folder`, so `AutoTokenizer.from_pretrained(folder)` loads it. A BPE's config names
    /// `GPT2Tokenizer`, and for a masked LM (BERT) also `<|mask|>` as mask token and `<|bos|>`,
    /// which begins elle's BERT sequences, as bos and cls token; a WordPiece's names
    /// `BertTokenizer` with its own [CLS], [SEP], [PAD], [MASK], [UNK] and normalization.
    public func writeHF(folder: String, context: Int, maskedLM: Bool = false) throws {
        let path = (folder as NSString).appendingPathComponent("tokenizer.json")
        if let t = subword { try t.save(to: path) } else { try writeAtomically(try ModelTokenizer.byteTokenizerJSON(), to: path) }
        var config: [String: Any] = [
            "tokenizer_class": "GPT2Tokenizer", "model_max_length": context, "add_prefix_space": false,
            "add_bos_token": false, "clean_up_tokenization_spaces": false, "errors": "replace",
            "bos_token": BPETokenizer.endOfTextName, "eos_token": BPETokenizer.endOfTextName,
            "unk_token": BPETokenizer.endOfTextName,
        ]
        switch self {
        case .bytes: break
        case .bpe:
            config["pad_token"] = "<|pad|>"
            if maskedLM {
                config["mask_token"] = "<|mask|>"
                config["bos_token"] = "<|bos|>"
                config["cls_token"] = "<|bos|>"
            }
        case .wordPiece(let t):
            let n = t.normalization
            config = ["tokenizer_class": "BertTokenizer", "model_max_length": context, "do_lower_case": n.lowercase,
                      "strip_accents": n.stripAccents.map { $0 as Any } ?? NSNull(), "tokenize_chinese_chars": n.handleChineseChars,
                      "clean_up_tokenization_spaces": false, "unk_token": t.tokenText(t.unknown), "pad_token": t.tokenText(t.pad),
                      "cls_token": t.tokenText(t.beginOfSequence), "sep_token": t.tokenText(t.endOfText), "mask_token": t.tokenText(t.mask)]
        }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try writeAtomically(data, to: (folder as NSString).appendingPathComponent("tokenizer_config.json"))
    }

    /// elle's byte tokenizer as a Hugging Face BPE: the 256 bytes (GPT-2's byte-level spelling)
    /// as ids 0-255, no merges, end-of-text 256. The ByteLevel pre-tokenizer only splits text into
    /// pieces, so every byte becomes its own token: the same ids as `ByteTokenizer`.
    static func byteTokenizerJSON() throws -> Data {
        var vocab: [String: Int] = [BPETokenizer.endOfTextName: 256]
        for b in 0..<256 { vocab[ByteLevel.encode([UInt8(b)])] = b }
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(),
            "added_tokens": [["id": 256, "content": BPETokenizer.endOfTextName, "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true] as [String: Any]],
            "normalizer": NSNull(), "pre_tokenizer": byteLevel, "post_processor": NSNull(), "decoder": byteLevel,
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": [String]()] as [String: Any],
        ]
        return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    }

    // MARK: reading

    /// A Hugging Face folder's tokenizer: its `tokenizer.json` if present (byte-level BPE or
    /// WordPiece), else BERT's `vocab.txt` (WordPiece, with `tokenizer_config.json`'s settings),
    /// else GPT-2's `vocab.json` + `merges.txt`. `sourceIds` gives each of elle's special tokens
    /// its id in the folder's files, so model rows follow their tokens when elle's id layout
    /// differs. A BPE of the 256 bytes in order with no merges and only end-of-text (what
    /// `writeHF` writes for `.bytes`) is read back as `.bytes`.
    public static func readHF(folder: String) throws -> (tokenizer: ModelTokenizer, sourceIds: [String: Int], file: String) {
        let json = (folder as NSString).appendingPathComponent("tokenizer.json")
        let wordPieceVocab = (folder as NSString).appendingPathComponent("vocab.txt")
        let vocab = (folder as NSString).appendingPathComponent("vocab.json")
        let merges = (folder as NSString).appendingPathComponent("merges.txt")
        let files = FileManager.default
        if files.fileExists(atPath: json) {
            let loaded = try TokenizerFile.load(json)
            let ids = try specialIds(tokenizerJSON: json, names: ModelTokenizer(loaded).specials.map(\.name))
            guard let bpe = loaded as? BPETokenizer else { return (ModelTokenizer(loaded), ids, json) }
            let isBytes = bpe.merges.isEmpty && bpe.ordinaryCount == 256
                && bpe.tokenBytes.enumerated().allSatisfy { $0.element == [UInt8($0.offset)] }
                && ids == [BPETokenizer.endOfTextName: 256]
            return (isBytes ? .bytes : .bpe(bpe), ids, json)
        }
        if files.fileExists(atPath: wordPieceVocab) {
            return (.wordPiece(try WordPieceTokenizer.loadVocabulary(wordPieceVocab)), [:], wordPieceVocab)
        }
        if files.fileExists(atPath: vocab), files.fileExists(atPath: merges) {
            let bpe = try BPETokenizer.loadGPT2(vocab: vocab, merges: merges)
            return (.bpe(bpe), [BPETokenizer.endOfTextName: bpe.endOfText.asInt], vocab)
        }
        throw InteropError(path: folder, "has no tokenizer: neither tokenizer.json, vocab.txt nor vocab.json + merges.txt")
    }

    /// Special tokens' ids in a tokenizer.json: its added tokens, and vocabulary entries that
    /// spell one of `names`.
    static func specialIds(tokenizerJSON path: String, names: [String]) throws -> [String: Int] {
        guard let data = FileManager.default.contents(atPath: path),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw InteropError(path: path, "is not a JSON object")
        }
        var ids: [String: Int] = [:]
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            if let id = entry["id"] as? Int, let content = entry["content"] as? String { ids[content] = id }
        }
        let vocab = (root["model"] as? [String: Any])?["vocab"] as? [String: Int] ?? [:]
        for name in names where ids[name] == nil {
            if let id = vocab[name] { ids[name] = id }
        }
        return ids
    }
}

extension Int32 {
    var asInt: Int { Int(self) }
}
