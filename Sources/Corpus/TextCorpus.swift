import Foundation
import Tensors

/// A bad data file or folder: "PATH: message".
public typealias DataError = LocatedError<DataErrorKind>
public enum DataErrorKind: FileErrorKind {
    public static func describe(_ path: String, _ message: String) -> String { "\(path): \(message)" }
}

/// A text file, or a folder of `.txt` files (recursively, in sorted path order), tokenized into
/// one stream with end-of-text after each document and split into train and validation parts.
/// Files that are not UTF-8 text are errors naming the file; line endings are read as LF
/// (`TextCheck.read`).
public struct TextCorpus {
    public let files: [String]
    public let train: Buffer<Int32>
    public let valid: Buffer<Int32>

    /// `validFraction` of the stream's tail (at least one sequence's worth when possible) is held
    /// out for validation.
    public init(path: String, tokenizer: Tokenizer, validFraction: Double = 0.05) throws {
        let files = try TextCorpus.listFiles(path)
        var stream: [Int32] = []
        for file in files {
            stream += tokenizer.encode(bytes: try TextCheck.read(file))
            stream.append(tokenizer.endOfText)
        }
        if stream.count <= files.count {
            throw DataError(path: path, "contains no text (\(files.count) empty file(s))")
        }
        let validCount = Int(Double(stream.count) * validFraction)
        self.files = files
        train = Buffer(Array(stream[0..<(stream.count - validCount)]))
        valid = Buffer(Array(stream[(stream.count - validCount)...]))
    }

    /// The text files under `path` (or `path` itself), sorted; errors name the path.
    public static func listFiles(_ path: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError(path: path, "does not exist")
        }
        if !isDirectory.boolValue { return [path] }
        guard let walker = FileManager.default.enumerator(atPath: path) else {
            throw DataError(path: path, "cannot be listed")
        }
        let files = walker.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".txt") }
            .sorted()
            .map { (path as NSString).appendingPathComponent($0) }
        if files.isEmpty { throw DataError(path: path, "holds no .txt files") }
        return files
    }
}
