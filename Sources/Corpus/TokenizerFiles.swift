import Foundation

/// GPT-2's reversible byte <-> printable character map (`bytes_to_unicode`), used in
/// `vocab.json`, `merges.txt` and Hugging Face `tokenizer.json` to spell byte strings.
public enum ByteLevel {
    /// Character (scalar value) of each byte.
    public static let byteToScalar: [UInt32] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var scalars = printable.map { UInt32($0) }
        var extra: UInt32 = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            scalars.append(256 + extra)
            extra += 1
        }
        var table = [UInt32](repeating: 0, count: 256)
        for (b, s) in zip(printable, scalars) { table[b] = s }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s] = UInt8(b) }
        return map
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }

    /// The bytes a byte-level string spells, or nil when it has a character outside the map.
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        for scalar in text.unicodeScalars {
            guard let b = scalarToByte[scalar.value] else { return nil }
            out.append(b)
        }
        return out
    }
}

extension BPETokenizer {
    /// Loads GPT-2's `vocab.json` (a.k.a. `encoder.json`) and `merges.txt` (a.k.a. `vocab.bpe`).
    /// Ordinary ids are GPT-2's (0..<50256, end-of-text 50256); the other specials follow.
    public static func loadGPT2(vocab vocabPath: String, merges mergesPath: String, domains: [String] = []) throws -> BPETokenizer {
        guard let vocabData = FileManager.default.contents(atPath: vocabPath) else {
            throw DataError(path: vocabPath, "cannot be read (GPT-2 vocab.json; scripts/fetch-gpt2.sh fetches it)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: vocabData) as? [String: Int] else {
            throw DataError(path: vocabPath, "is not a JSON object of token -> id")
        }
        var tokenBytes = [[UInt8]](repeating: [], count: json.count)
        var endOfText = -1
        for (text, id) in json {
            guard id >= 0 && id < json.count else { throw DataError(path: vocabPath, "id \(id) of \(text) is out of range") }
            if text == endOfTextName { endOfText = id; continue }
            guard let bytes = ByteLevel.decode(text) else {
                throw DataError(path: vocabPath, "token \(text) is not a byte-level string")
            }
            tokenBytes[id] = bytes
        }
        guard endOfText == json.count - 1 else {
            throw DataError(path: vocabPath, "must end with \(endOfTextName) as its last id")
        }
        tokenBytes.removeLast()
        let merges = try readMerges(mergesPath, tokenBytes: tokenBytes)
        return try BPETokenizer(tokenBytes: tokenBytes, merges: merges, domains: domains)
    }

    /// Parses `merges.txt`: an optional `#version` line, then "left right" per line.
    static func readMerges(_ path: String, tokenBytes: [[UInt8]]) throws -> [(Int32, Int32)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DataError(path: path, "cannot be read as UTF-8 text (GPT-2 merges.txt)")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if lines.first?.hasPrefix("#version") == true { lines.removeFirst() }
        return try parseMerges(lines, tokenBytes: tokenBytes, path: path)
    }

    static func parseMerges(_ lines: [String], tokenBytes: [[UInt8]], path: String) throws -> [(Int32, Int32)] {
        var ids: [[UInt8]: Int32] = [:]
        for (id, bytes) in tokenBytes.enumerated() { ids[bytes] = Int32(id) }
        var merges: [(Int32, Int32)] = []
        merges.reserveCapacity(lines.count)
        for (number, line) in lines.enumerated() {
            let halves = line.split(separator: " ", omittingEmptySubsequences: false)
            guard halves.count == 2, let a = ByteLevel.decode(String(halves[0])), let b = ByteLevel.decode(String(halves[1])),
                  let left = ids[a], let right = ids[b] else {
                throw DataError(path: path, "merge \(number + 1) (\(line)) is not two vocabulary tokens")
            }
            merges.append((left, right))
        }
        return merges
    }

    // MARK: Hugging Face tokenizer.json

    /// Writes a Hugging Face `tokenizer.json` (BPE model, ByteLevel pre-tokenizer and decoder,
    /// specials as added tokens), atomically.
    public func save(to path: String) throws {
        var s = tokenizerJSONHead(addedTokens: specials.enumerated().map { (tokenBytes.count + $0.offset, $0.element) })
        s += "  \"normalizer\": null,\n"
        s += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n"
        s += "  \"post_processor\": null,\n"
        s += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
        s += "  \"model\": {\n    \"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,\n"
        s += "    \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n"
        s += "    \"vocab\": {\n"
        for (id, bytes) in tokenBytes.enumerated() {
            s += "      \(jsonString(ByteLevel.encode(bytes))): \(id),\n"
        }
        for (k, name) in specials.enumerated() {
            s += "      \(jsonString(name)): \(tokenBytes.count + k)" + (k + 1 < specials.count ? ",\n" : "\n")
        }
        s += "    },\n    \"merges\": [\n"
        for (k, (a, b)) in merges.enumerated() {
            let line = ByteLevel.encode(tokenBytes[Int(a)]) + " " + ByteLevel.encode(tokenBytes[Int(b)])
            s += "      \(jsonString(line))" + (k + 1 < merges.count ? ",\n" : "\n")
        }
        s += "    ]\n  }\n}\n"
        try writeAtomically(Data(s.utf8), to: path)
    }

    /// Loads a Hugging Face `tokenizer.json` with a byte-level BPE model: elle's own files, or
    /// others whose merge ranks follow their token ids (as GPT-2's do). Added tokens are the
    /// specials; required ones that are missing are appended (with 16 spare prompts).
    public static func load(_ path: String) throws -> BPETokenizer {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(path: path, "cannot be read (tokenizer.json)")
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let model = root["model"] as? [String: Any], let vocab = model["vocab"] as? [String: Int] else {
            throw DataError(path: path, "is not a tokenizer.json with a model.vocab object")
        }
        if let type = model["type"] as? String, type != "BPE" {
            throw DataError(path: path, "has a \(type) model; elle reads byte-level BPE only")
        }
        var specialIds: [Int: String] = [:]
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            if let id = entry["id"] as? Int, let content = entry["content"] as? String { specialIds[id] = content }
        }
        for (text, id) in vocab where text.hasPrefix("<|") && text.hasSuffix("|>") && ByteLevel.decode(text) == nil {
            specialIds[id] = text
        }
        let ordinaryCount = vocab.count - vocab.values.filter { specialIds[$0] != nil }.count
        var tokenBytes = [[UInt8]](repeating: [], count: ordinaryCount)
        for (text, id) in vocab where specialIds[id] == nil {
            guard id >= 0 && id < ordinaryCount else {
                throw DataError(path: path, "ordinary token \(text) has id \(id); specials must follow the ordinary ids")
            }
            guard let bytes = ByteLevel.decode(text) else {
                throw DataError(path: path, "token \(text) is not a byte-level string")
            }
            tokenBytes[id] = bytes
        }
        var specials: [String] = []
        for id in specialIds.keys.sorted() {
            guard id == ordinaryCount + specials.count else {
                throw DataError(path: path, "special \(specialIds[id]!) has id \(id); specials must be contiguous after \(ordinaryCount) ordinary tokens")
            }
            specials.append(specialIds[id]!)
        }
        for name in requiredSpecials.reversed() where !specials.contains(name) { specials.insert(name, at: 0) }
        let required = requiredSpecials.filter { specials.contains($0) }
        specials = required + specials.filter { !requiredSpecials.contains($0) }
        if !specials.contains(where: { $0.hasPrefix("<|domain:spare-") }) {
            specials += (0..<sparePrompts).map(spareName)
        }
        let lines: [String]
        if let strings = model["merges"] as? [String] {
            lines = strings
        } else if let pairs = model["merges"] as? [[String]] {
            lines = pairs.map { $0.joined(separator: " ") }
        } else {
            throw DataError(path: path, "has no model.merges list")
        }
        let merges = try parseMerges(lines, tokenBytes: tokenBytes, path: path)
        return try BPETokenizer(tokenBytes: tokenBytes, merges: merges, specials: specials)
    }
}

/// JSON string literal (quotes, backslashes and control characters escaped).
/// The opening of a Hugging Face `tokenizer.json` up to its `added_tokens` list (ids and
/// contents, all special), which both tokenizer kinds write the same way.
func tokenizerJSONHead(addedTokens: [(id: Int, content: String)]) -> String {
    var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n"
    for (k, token) in addedTokens.enumerated() {
        s += "    {\"id\": \(token.id), \"content\": \(jsonString(token.content)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
        s += k + 1 < addedTokens.count ? ",\n" : "\n"
    }
    return s + "  ],\n"
}

func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// Writes `data` to a temporary file beside `path`, then renames it over `path`, so a reader
/// never sees a partial file.
public func writeAtomically(_ data: Data, to path: String) throws {
    let temporary = path + ".tmp-\(getpid())"
    guard FileManager.default.createFile(atPath: temporary, contents: data) else {
        throw DataError(path: temporary, "cannot be written")
    }
    if rename(temporary, path) != 0 {
        try? FileManager.default.removeItem(atPath: temporary)
        throw DataError(path: path, "cannot be replaced (rename failed: errno \(errno))")
    }
}
