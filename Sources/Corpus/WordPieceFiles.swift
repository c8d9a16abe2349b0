import Foundation

extension WordPieceTokenizer {
    static let standardSpecials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    /// Reads BERT's `vocab.txt` (one token per line, the line number its id) with the settings of
    /// a `tokenizer_config.json` beside it (`do_lower_case`, `strip_accents`,
    /// `tokenize_chinese_chars`; BertTokenizer's defaults without it), and 16 spare prompts.
    public static func loadVocabulary(_ path: String) throws -> WordPieceTokenizer {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DataError(path: path, "cannot be read as UTF-8 text (a WordPiece vocab.txt)")
        }
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        let tokens = lines.map { line -> String in
            var token = Substring(line)
            while let last = token.unicodeScalars.last, last.properties.isWhitespace { token = token.dropLast() }
            return String(token)
        }
        var normalization = Normalization()
        let configPath = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        if let data = FileManager.default.contents(atPath: configPath) {
            guard let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw DataError(path: configPath, "is not a JSON object")
            }
            normalization.lowercase = config["do_lower_case"] as? Bool ?? true
            normalization.stripAccents = config["strip_accents"] as? Bool
            normalization.handleChineseChars = config["tokenize_chinese_chars"] as? Bool ?? true
        }
        return try WordPieceTokenizer(tokens: tokens, vocabularySpecials: standardSpecials.filter(tokens.contains),
                                      normalization: normalization, path: path)
    }

    /// Reads a Hugging Face `tokenizer.json` with a WordPiece model: BERT's (BertNormalizer or
    /// none, BertPreTokenizer) or elle's own, whose prompt tokens follow the vocabulary.
    static func load(_ path: String, data: Data) throws -> WordPieceTokenizer {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let model = root["model"] as? [String: Any], let vocab = model["vocab"] as? [String: Int] else {
            throw DataError(path: path, "is not a tokenizer.json with a model.vocab object")
        }
        if let prefix = model["continuing_subword_prefix"] as? String, prefix != continuingPrefix {
            throw DataError(path: path, "model.continuing_subword_prefix is \(prefix); elle reads WordPiece with ##")
        }
        var normalization = Normalization()
        switch root["normalizer"] {
        case let normalizer as [String: Any]:
            guard normalizer["type"] as? String == "BertNormalizer" else {
                throw DataError(path: path, "normalizer is \(normalizer["type"] ?? "untyped"); elle's WordPiece reads BertNormalizer (or none)")
            }
            normalization.cleanText = normalizer["clean_text"] as? Bool ?? true
            normalization.handleChineseChars = normalizer["handle_chinese_chars"] as? Bool ?? true
            normalization.stripAccents = normalizer["strip_accents"] as? Bool
            normalization.lowercase = normalizer["lowercase"] as? Bool ?? true
        default:
            normalization.cleanText = false
            normalization.handleChineseChars = false
            normalization.stripAccents = false
            normalization.lowercase = false
        }
        if let pre = root["pre_tokenizer"] as? [String: Any], pre["type"] as? String != "BertPreTokenizer" {
            throw DataError(path: path, "pre_tokenizer is \(pre["type"] ?? "untyped"); elle's WordPiece reads BertPreTokenizer")
        }
        // elle's prompt names follow the vocabulary's own tokens.
        let isElleSpecial = { (name: String) in name.hasPrefix("<|domain:") && name.hasSuffix("|>") }
        let ordinary = vocab.count - vocab.keys.filter(isElleSpecial).count
        var tokens = [String?](repeating: nil, count: ordinary)
        var specials = [String?](repeating: nil, count: vocab.count - ordinary)
        for (token, id) in vocab {
            if isElleSpecial(token) {
                guard id >= ordinary && id < vocab.count else {
                    throw DataError(path: path, "special \(token) has id \(id); elle's prompt tokens must follow the \(ordinary) vocabulary tokens")
                }
                specials[id - ordinary] = token
            } else {
                guard id >= 0 && id < ordinary else { throw DataError(path: path, "token \(token) has id \(id), outside 0..<\(ordinary)") }
                tokens[id] = token
            }
        }
        if let gap = tokens.firstIndex(where: { $0 == nil }) { throw DataError(path: path, "model.vocab has no token with id \(gap)") }
        var names = specials.compactMap { $0 }
        if names.isEmpty { names = (0..<BPETokenizer.sparePrompts).map(BPETokenizer.spareName) }
        let added = (root["added_tokens"] as? [[String: Any]] ?? []).compactMap { $0["content"] as? String }.filter { !isElleSpecial($0) }
        let unknown = model["unk_token"] as? String ?? "[UNK]"
        return try WordPieceTokenizer(tokens: tokens.map { $0! }, specials: names, vocabularySpecials: added.isEmpty ? standardSpecials : added,
                                      normalization: normalization,
                                      maxInputCharsPerWord: model["max_input_chars_per_word"] as? Int ?? 100,
                                      roles: (unknown, "[PAD]", "[MASK]", "[CLS]", "[SEP]"), path: path)
    }

    /// Writes a Hugging Face `tokenizer.json` (BertNormalizer, BertPreTokenizer, BERT's
    /// [CLS] ... [SEP] post-processor, WordPiece model and decoder) with the vocabulary's specials
    /// and elle's prompts as added tokens, atomically. `tokenizers` loads it as it loads BERT's.
    public func save(to path: String) throws {
        func flag(_ b: Bool) -> String { b ? "true" : "false" }
        let n = normalization
        var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n"
        let added = specialTokens
        for (k, (id, name)) in added.enumerated() {
            s += "    {\"id\": \(id), \"content\": \(jsonString(name)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
            s += k + 1 < added.count ? ",\n" : "\n"
        }
        s += "  ],\n"
        s += "  \"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": \(flag(n.cleanText)), \"handle_chinese_chars\": \(flag(n.handleChineseChars)), "
        s += "\"strip_accents\": \(n.stripAccents.map(flag) ?? "null"), \"lowercase\": \(flag(n.lowercase))},\n"
        s += "  \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},\n"
        s += "  \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\(jsonString(tokens[Int(endOfText)])), \(endOfText)], "
        s += "\"cls\": [\(jsonString(tokens[Int(beginOfSequence)])), \(beginOfSequence)]},\n"
        s += "  \"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true},\n"
        s += "  \"model\": {\n    \"type\": \"WordPiece\", \"unk_token\": \(jsonString(tokens[Int(unknown)])), "
        s += "\"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": \(maxInputCharsPerWord),\n    \"vocab\": {\n"
        // A repeated vocabulary token is written once, with the id encoding gives it (its last).
        var last: [String: Int] = [:]
        for (id, token) in tokens.enumerated() { last[token] = id }
        let entries = tokens.indices.filter { last[tokens[$0]] == $0 }.map { "      \(jsonString(tokens[$0])): \($0)" }
            + specials.enumerated().map { "      \(jsonString($1)): \(tokens.count + $0)" }
        s += entries.joined(separator: ",\n") + "\n    }\n  }\n}\n"
        try writeAtomically(Data(s.utf8), to: path)
    }
}
