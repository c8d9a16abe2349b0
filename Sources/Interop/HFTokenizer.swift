import Corpus
import Foundation

/// The tokenizer a checkpoint was trained with: elle's byte tokenizer (ids 0-255 the bytes, 256
/// end-of-text) or a byte-level BPE (`docs/DATA.md`).
public enum ModelTokenizer {
    case bytes
    case bpe(BPETokenizer)

    /// The tokenizer a checkpoint names in `options.tokenizer` ("bytes" or a tokenizer.json path).
    public static func load(named name: String) throws -> ModelTokenizer {
        name == "bytes" ? .bytes : .bpe(try BPETokenizer.load(name))
    }

    public var vocabularySize: Int {
        switch self {
        case .bytes: return 257
        case .bpe(let t): return t.vocabularySize
        }
    }

    public var endOfText: Int { self.tokenizer.endOfText.asInt }

    public var tokenizer: Tokenizer {
        switch self {
        case .bytes: return ByteTokenizer()
        case .bpe(let t): return t
        }
    }

    /// Names of the special tokens by id (end-of-text first).
    public var specials: [(id: Int, name: String)] {
        switch self {
        case .bytes: return [(256, BPETokenizer.endOfTextName)]
        case .bpe(let t): return t.specials.enumerated().map { (t.ordinaryCount + $0, $1) }
        }
    }

    var pad: Int? {
        switch self {
        case .bytes: return nil
        case .bpe(let t): return t.pad.asInt
        }
    }

    // MARK: writing

    /// Writes `tokenizer.json` (byte-level BPE; every special an added token) and
    /// `tokenizer_config.json` into `folder`, so `AutoTokenizer.from_pretrained(folder)` loads it.
    /// For a masked LM (BERT) the config also names `<|mask|>` as mask token and `<|bos|>`, which
    /// begins elle's BERT sequences, as bos and cls token.
    public func writeHF(folder: String, context: Int, maskedLM: Bool = false) throws {
        let path = (folder as NSString).appendingPathComponent("tokenizer.json")
        switch self {
        case .bpe(let t): try t.save(to: path)
        case .bytes: try writeAtomically(try ModelTokenizer.byteTokenizerJSON(), to: path)
        }
        var config: [String: Any] = [
            "tokenizer_class": "GPT2Tokenizer", "model_max_length": context, "add_prefix_space": false,
            "add_bos_token": false, "clean_up_tokenization_spaces": false, "errors": "replace",
            "bos_token": BPETokenizer.endOfTextName, "eos_token": BPETokenizer.endOfTextName,
            "unk_token": BPETokenizer.endOfTextName,
        ]
        if case .bpe = self { config["pad_token"] = "<|pad|>" }
        if maskedLM, case .bpe = self {
            config["mask_token"] = "<|mask|>"
            config["bos_token"] = "<|bos|>"
            config["cls_token"] = "<|bos|>"
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

    /// A Hugging Face folder's tokenizer: its `tokenizer.json` if present, else GPT-2's
    /// `vocab.json` + `merges.txt`. `sourceIds` gives each special token's id in the folder's
    /// files, so model rows follow their tokens when elle's id layout differs. A BPE of the 256
    /// bytes in order with no merges and only end-of-text (what `writeHF` writes for `.bytes`) is
    /// read back as `.bytes`.
    public static func readHF(folder: String) throws -> (tokenizer: ModelTokenizer, sourceIds: [String: Int], file: String) {
        let json = (folder as NSString).appendingPathComponent("tokenizer.json")
        let vocab = (folder as NSString).appendingPathComponent("vocab.json")
        let merges = (folder as NSString).appendingPathComponent("merges.txt")
        let files = FileManager.default
        if files.fileExists(atPath: json) {
            let bpe = try BPETokenizer.load(json)
            let ids = try specialIds(tokenizerJSON: json, names: bpe.specials)
            let isBytes = bpe.merges.isEmpty && bpe.ordinaryCount == 256
                && bpe.tokenBytes.enumerated().allSatisfy { $0.element == [UInt8($0.offset)] }
                && ids == [BPETokenizer.endOfTextName: 256]
            return (isBytes ? .bytes : .bpe(bpe), ids, json)
        }
        if files.fileExists(atPath: vocab), files.fileExists(atPath: merges) {
            let bpe = try BPETokenizer.loadGPT2(vocab: vocab, merges: merges)
            return (.bpe(bpe), [BPETokenizer.endOfTextName: bpe.endOfText.asInt], vocab)
        }
        throw InteropError(path: folder, "has no tokenizer: neither tokenizer.json nor vocab.json + merges.txt")
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
