/// Text to token ids and back.
public protocol Tokenizer {
    var vocabularySize: Int { get }
    /// The end-of-text id, appended after each document.
    var endOfText: Int32 { get }
    func encode(_ text: String) -> [Int32]
    func encode(bytes: [UInt8]) -> [Int32]
    func decode(_ tokens: [Int32]) -> String
}

/// The byte-level tokenizer used until BPE lands: ids 0..<256 are the bytes, 256 is
/// end-of-text. Decoding skips special ids and repairs invalid UTF-8.
public struct ByteTokenizer: Tokenizer {
    public init() {}
    public var vocabularySize: Int { 257 }
    public var endOfText: Int32 { 256 }

    public func encode(_ text: String) -> [Int32] { encode(bytes: Array(text.utf8)) }
    public func encode(bytes: [UInt8]) -> [Int32] { bytes.map { Int32($0) } }

    public func decode(_ tokens: [Int32]) -> String {
        let bytes = tokens.compactMap { $0 >= 0 && $0 < 256 ? UInt8($0) : nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
