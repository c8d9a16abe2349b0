import Corpus
import Foundation

/// A bad task file: names the file, the line (1-based, 0 for the file as a whole) and the field.
public struct TaskError: Error, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var message: String
    public init(path: String, line: Int = 0, _ message: String) {
        self.path = path
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
}

/// A text classification task (docs/FINETUNE.md): JSONL examples `{"text": ..., "label": ...}`
/// in a train, a dev and a test split. Either a folder holding `train.jsonl`, `dev.jsonl` and
/// `test.jsonl`, or one `.jsonl` file whose lines also carry `"split"` (train, dev or test).
/// The classes are the train split's distinct labels, sorted; dev and test may use only those.
public struct ClassificationTask {
    public struct Example: Equatable {
        public var text: String
        /// Index into `labels`.
        public var label: Int
        public init(text: String, label: Int) {
            self.text = text
            self.label = label
        }
    }

    public var labels: [String]
    public var train: [Example]
    public var dev: [Example]
    public var test: [Example]

    public static let splits = ["train", "dev", "test"]

    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TaskError(path: path, "does not exist (a task is a folder with train.jsonl, dev.jsonl, test.jsonl, or one .jsonl file with a split field)")
        }
        var rows: [String: [(text: String, label: String, line: Int, file: String)]] = [:]
        if isDirectory.boolValue {
            for split in Self.splits {
                let file = (path as NSString).appendingPathComponent("\(split).jsonl")
                rows[split] = try Self.read(file, split: split).map { ($0.text, $0.label, $0.line, $0.file) }
            }
        } else {
            for row in try Self.read(path, split: nil) { rows[row.split, default: []].append((row.text, row.label, row.line, row.file)) }
        }
        for split in Self.splits where (rows[split] ?? []).isEmpty {
            throw TaskError(path: path, "has no \(split) examples")
        }
        let names = Array(Set(rows["train"]!.map(\.label))).sorted()
        guard names.count >= 2 else {
            throw TaskError(path: path, "the train split has \(names.count) distinct label(s); a classifier needs at least 2")
        }
        let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
        func examples(_ split: String) throws -> [Example] {
            try rows[split]!.map { row in
                guard let label = index[row.label] else {
                    throw TaskError(path: row.file, line: row.line, "label \"\(row.label)\" does not occur in the train split (its labels: \(names.joined(separator: ", ")))")
                }
                return Example(text: row.text, label: label)
            }
        }
        labels = names
        train = try examples("train")
        dev = try examples("dev")
        test = try examples("test")
    }

    /// Lines of one JSONL file; `split` nil means each line names its own.
    private static func read(_ file: String, split: String?) throws -> [(text: String, label: String, split: String, line: Int, file: String)] {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw TaskError(path: file, "cannot be read as UTF-8 text")
        }
        var out: [(String, String, String, Int, String)] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw TaskError(path: file, line: i + 1, "is not a JSON object")
            }
            guard let text = object["text"] as? String else {
                throw TaskError(path: file, line: i + 1, "field \"text\" is missing or not a string")
            }
            let label: String
            if let s = object["label"] as? String { label = s } else if let n = object["label"] as? Int { label = String(n) } else {
                throw TaskError(path: file, line: i + 1, "field \"label\" is missing or not a string or integer")
            }
            var rowSplit = split ?? ""
            if split == nil {
                guard let s = object["split"] as? String, splits.contains(s) else {
                    throw TaskError(path: file, line: i + 1, "field \"split\" must be one of \(splits.joined(separator: ", ")) in a single-file task")
                }
                rowSplit = s
            }
            out.append((text, label, rowSplit, i + 1, file))
        }
        return out
    }
}

/// How a text becomes a classifier's input sequence, as in pre-training (`MaskedLM`):
/// `<|bos|>`, the domain prompt when there is one, then the text's tokens, cut to `seq` tokens.
public struct SequenceFormat: Equatable, Sendable {
    public var beginToken: Int32
    public var prompt: Int32?
    public var padToken: Int32
    public var seq: Int

    public init(beginToken: Int32, prompt: Int32?, padToken: Int32, seq: Int) {
        self.beginToken = beginToken
        self.prompt = prompt
        self.padToken = padToken
        self.seq = seq
    }

    /// The sequence for a text's tokens (at most `seq` long, never padded).
    public func sequence(_ text: [Int32]) -> [Int32] {
        var s: [Int32] = [beginToken]
        if let prompt { s.append(prompt) }
        s += text.prefix(max(0, seq - s.count))
        return Array(s.prefix(seq))
    }

    /// Writes `rows` sequences into `tokens` (rows, t), padding each with `padToken`.
    public static func fill(_ sequences: [[Int32]], pad: Int32, tokens: UnsafeMutablePointer<Int32>, seq t: Int) {
        for (r, s) in sequences.enumerated() {
            precondition(s.count <= t, "sequence of \(s.count) tokens in a batch of \(t)")
            let row = tokens + r * t
            s.withUnsafeBufferPointer { row.update(from: $0.baseAddress!, count: s.count) }
            (row + s.count).update(repeating: pad, count: t - s.count)
        }
    }
}

/// A split tokenized once: each example's sequence and label.
public struct EncodedSplit {
    public var sequences: [[Int32]]
    public var labels: [Int32]
    public var count: Int { labels.count }

    public init(sequences: [[Int32]], labels: [Int32]) {
        precondition(sequences.count == labels.count)
        self.sequences = sequences
        self.labels = labels
    }

    public init(_ examples: [ClassificationTask.Example], tokenizer: SubwordTokenizer, format: SequenceFormat) {
        self.init(sequences: examples.map { format.sequence(tokenizer.encode($0.text)) }, labels: examples.map { Int32($0.label) })
    }
}
