import Dispatch

/// Byte-level BPE (GPT-2 style): text is split by `PreTokenizer`, each piece's UTF-8 bytes start
/// as one token per byte, and adjacent tokens merge while some adjacent pair concatenates to a
/// vocabulary token, lowest id first (tiktoken's rule; ids are in merge order, so id = rank).
///
/// Id layout (docs/DATA.md): ids `0..<ordinaryCount` are ordinary tokens (byte strings); the
/// special tokens follow, starting with end-of-text:
///
///     ordinaryCount + 0   <|endoftext|>     (GPT-2: 50256)
///                   + 1   <|pad|>
///                   + 2   <|mask|>
///                   + 3   <|bos|>           begin of sequence
///                   + 4.. <|domain:NAME|>   one prompt token per domain named at creation,
///                         <|domain:spare-K|> then `sparePrompts` (16) spares that a later domain
///                                           takes over by name (`assignPrompt`), so adding a
///                                           domain never changes the vocabulary size.
///
/// Special tokens are only ever inserted by id: text that spells `<|endoftext|>` is encoded as
/// ordinary text (like tiktoken's `encode_ordinary`).
public final class BPETokenizer: SubwordTokenizer, @unchecked Sendable {
    public static let endOfTextName = "<|endoftext|>"
    public static let requiredSpecials = ["<|endoftext|>", "<|pad|>", "<|mask|>", "<|bos|>"]
    public static let sparePrompts = 16
    public static func promptName(_ domain: String) -> String { "<|domain:\(domain)|>" }
    public static func spareName(_ k: Int) -> String { "<|domain:spare-\(k)|>" }

    /// Bytes of each ordinary token, by id.
    public let tokenBytes: [[UInt8]]
    /// The merge list (left id, right id) in rank order; merge k made token `firstMergeId + k`.
    public let merges: [(Int32, Int32)]
    /// Names of the special tokens, by id - ordinaryCount.
    public private(set) var specials: [String]
    /// Initial token of each byte value.
    let byteToId: [Int32]
    /// (left, right) -> the token their bytes concatenate to (every split of every token).
    let pairs: PairTable
    /// Whole byte string -> token (tiktoken encodes a piece that is one token directly).
    let vocabulary: ByteStringTable

    public var ordinaryCount: Int { tokenBytes.count }
    public var vocabularySize: Int { tokenBytes.count + specials.count }
    public var endOfText: Int32 { Int32(tokenBytes.count) }
    public var pad: Int32 { endOfText + 1 }
    public var mask: Int32 { endOfText + 2 }
    public var beginOfSequence: Int32 { endOfText + 3 }

    /// Builds a tokenizer from its ordinary tokens and merges, with the standard specials: the
    /// required four, a prompt for each of `domains`, and 16 spare prompts.
    public convenience init(tokenBytes: [[UInt8]], merges: [(Int32, Int32)], domains: [String] = []) throws {
        let specials = BPETokenizer.requiredSpecials + domains.map(BPETokenizer.promptName)
            + (0..<BPETokenizer.sparePrompts).map(BPETokenizer.spareName)
        try self.init(tokenBytes: tokenBytes, merges: merges, specials: specials)
    }

    /// Builds a tokenizer with exactly these specials (they must begin with the required four).
    public init(tokenBytes: [[UInt8]], merges: [(Int32, Int32)], specials: [String]) throws {
        guard Array(specials.prefix(4)) == BPETokenizer.requiredSpecials else {
            throw DataError(path: "tokenizer", "special tokens must begin with \(BPETokenizer.requiredSpecials), got \(specials.prefix(4))")
        }
        guard Set(specials).count == specials.count else {
            throw DataError(path: "tokenizer", "special tokens repeat a name")
        }
        self.tokenBytes = tokenBytes
        self.merges = merges
        self.specials = specials
        let vocabulary = ByteStringTable(capacity: tokenBytes.count)
        var byteToId = [Int32](repeating: -1, count: 256)
        for (id, bytes) in tokenBytes.enumerated() {
            guard !bytes.isEmpty else { throw DataError(path: "tokenizer", "token \(id) is empty") }
            if vocabulary.firstValue(bytes) >= 0 {
                throw DataError(path: "tokenizer", "token \(id) repeats the bytes of token \(vocabulary.firstValue(bytes))")
            }
            vocabulary.insert(bytes, token: Int32(id))
            if bytes.count == 1 { byteToId[Int(bytes[0])] = Int32(id) }
        }
        if let missing = byteToId.firstIndex(of: -1) {
            throw DataError(path: "tokenizer", "has no token for byte \(missing); byte-level BPE needs all 256")
        }
        // Every split of every token into two tokens: at most sum(length - 1) entries.
        let pairs = PairTable(capacity: tokenBytes.reduce(0) { $0 + $1.count - 1 } + 1)
        for (id, bytes) in tokenBytes.enumerated() where bytes.count > 1 {
            bytes.withUnsafeBufferPointer { b in
                for k in 1..<b.count {
                    let left = vocabulary.firstValue(b.baseAddress!, k)
                    let right = vocabulary.firstValue(b.baseAddress! + k, b.count - k)
                    if left >= 0 && right >= 0 { pairs.insert(left, right, Int32(id)) }
                }
            }
        }
        self.byteToId = byteToId
        self.pairs = pairs
        self.vocabulary = vocabulary
    }

    // MARK: specials

    /// The id of a special token by name, or nil.
    public func specialId(_ name: String) -> Int32? {
        specials.firstIndex(of: name).map { Int32(tokenBytes.count + $0) }
    }

    /// The prompt token of a domain, or nil when the domain has none (see `assignPrompt`).
    public func promptId(domain: String) -> Int32? { specialId(BPETokenizer.promptName(domain)) }

    /// Domains that have prompt tokens, in id order.
    public var promptDomains: [String] { DomainPrompts.domains(in: specials) }

    /// Gives `domain` a prompt token, taking the first spare when it has none. Vocabulary size is
    /// unchanged. Throws when no spare is left.
    @discardableResult
    public func assignPrompt(domain: String) throws -> Int32 {
        if let id = promptId(domain: domain) { return id }
        return Int32(tokenBytes.count + (try DomainPrompts.assign(domain, in: &specials)))
    }

    public var specialTokens: [(id: Int, name: String)] { specials.enumerated().map { (tokenBytes.count + $0, $1) } }

    public func makeEncoder() -> PieceEncoder { BPEEncoder(self) }

    /// Printable text of any id (special names for specials).
    public func tokenText(_ id: Int32) -> String {
        let i = Int(id)
        if i >= 0 && i < tokenBytes.count { return String(decoding: tokenBytes[i], as: UTF8.self) }
        if i >= tokenBytes.count && i < vocabularySize { return specials[i - tokenBytes.count] }
        return "<|invalid:\(id)|>"
    }

    // MARK: encode / decode

    public func encode(_ text: String) -> [Int32] {
        var text = text
        return text.withUTF8 { encode(bytes: $0) }
    }

    public func encode(bytes: [UInt8]) -> [Int32] {
        bytes.withUnsafeBufferPointer { encode(bytes: $0) }
    }

    /// Encodes on this thread.
    public func encode(bytes: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3)
        BPEEncoder(self).encode(bytes, into: &out)
        return out
    }

    /// Encodes a long text on up to `threads` threads: it is cut at newlines where pre-tokenization
    /// is unaffected (`PreTokenizer.safeCuts`), so the result equals `encode(bytes:)`.
    public func encodeParallel(bytes: UnsafeBufferPointer<UInt8>, threads: Int) -> [Int32] {
        guard let base = bytes.baseAddress, threads > 1, bytes.count > 1 << 16 else { return encode(bytes: bytes) }
        let cuts = [0] + PreTokenizer.safeCuts(base, bytes.count, parts: threads) + [bytes.count]
        let parts = cuts.count - 1
        let results = UnsafeMutablePointer<[Int32]>.allocate(capacity: parts)
        results.initialize(repeating: [], count: parts)
        defer { results.deinitialize(count: parts); results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: parts) { k in
            results[k] = encode(bytes: UnsafeBufferPointer(rebasing: bytes[cuts[k]..<cuts[k + 1]]))
        }
        var out: [Int32] = []
        out.reserveCapacity((0..<parts).reduce(0) { $0 + results[$1].count })
        for k in 0..<parts { out += results[k] }
        return out
    }

    /// The bytes of ordinary tokens, concatenated (special and unknown ids are skipped).
    public func decodeBytes(_ tokens: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(tokens.count * 4)
        for t in tokens where t >= 0 && Int(t) < tokenBytes.count { out += tokenBytes[Int(t)] }
        return out
    }

    /// Text of the ordinary tokens (special ids skipped; invalid UTF-8 repaired with U+FFFD).
    public func decode(_ tokens: [Int32]) -> String {
        String(decoding: decodeBytes(tokens), as: UTF8.self)
    }
}

/// One thread's encoder: the tokenizer's read-only tables plus a cache of encoded pieces and
/// merge scratch. Not thread-safe; make one per thread.
public final class BPEEncoder {
    let tokenizer: BPETokenizer
    private let byteToId: UnsafeMutablePointer<Int32>
    private let pairs: PairTable.Reader
    private let vocabulary: ByteStringTable.Reader
    private let cache = ByteStringTable(capacity: 1 << 14)
    private var parts = [Int32](repeating: 0, count: 256)
    private var ranks = [Int32](repeating: 0, count: 256)
    /// Longest piece whose encoding is cached; the cache is emptied when it holds this many.
    private let cacheableLength = 64
    private let cacheLimit = 1 << 17

    public init(_ tokenizer: BPETokenizer) {
        self.tokenizer = tokenizer
        byteToId = .allocate(capacity: 256)
        byteToId.initialize(from: tokenizer.byteToId, count: 256)
        pairs = tokenizer.pairs.reader
        vocabulary = tokenizer.vocabulary.reader
    }

    deinit { byteToId.deallocate() }

    /// Appends the encoding of `bytes` to `out`.
    public func encode(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        guard let p = bytes.baseAddress, bytes.count > 0 else { return }
        PreTokenizer.split(p, bytes.count) { start, end in
            let n = end - start
            let piece = p + start
            if n == 1 { out.append(byteToId[Int(piece[0])]); return }
            let h = hashBytes(piece, n)
            if vocabulary.appendValue(piece, n, hash: h, to: &out) { return }
            if cache.appendValue(piece, n, hash: h, to: &out) { return }
            let first = out.count
            merge(piece, n, into: &out)
            if n <= cacheableLength {
                if cache.count >= cacheLimit { cache.clear() }
                out.withUnsafeBufferPointer { cache.insert(piece, n, hash: h, tokens: UnsafeBufferPointer(rebasing: $0[first...])) }
            }
        }
    }

    /// BPE on one piece: repeatedly merges the leftmost adjacent pair with the lowest merged id.
    private func merge(_ piece: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int32]) {
        if parts.count < n {
            parts = [Int32](repeating: 0, count: n * 2)
            ranks = [Int32](repeating: 0, count: n * 2)
        }
        let pairs = self.pairs, byteToId = self.byteToId
        parts.withUnsafeMutableBufferPointer { partsBuffer in
            ranks.withUnsafeMutableBufferPointer { ranksBuffer in
                let part = partsBuffer.baseAddress!, rank = ranksBuffer.baseAddress!
                @inline(__always) func rankOf(_ a: Int32, _ b: Int32) -> Int32 {
                    let r = pairs.lookup(a, b)
                    return r < 0 ? Int32.max : r
                }
                for k in 0..<n { part[k] = byteToId[Int(piece[k])] }
                var m = n
                for k in 0..<(m - 1) { rank[k] = rankOf(part[k], part[k + 1]) }
                while m > 1 {
                    var best = 0
                    var bestRank = rank[0]
                    for k in 1..<(m - 1) where rank[k] < bestRank {
                        bestRank = rank[k]
                        best = k
                    }
                    if bestRank == Int32.max { break }
                    part[best] = bestRank
                    // Remove part[best + 1] and rank[best + 1].
                    var k = best + 1
                    while k < m - 1 { part[k] = part[k + 1]; k += 1 }
                    k = best + 1
                    while k < m - 2 { rank[k] = rank[k + 1]; k += 1 }
                    m -= 1
                    if best > 0 { rank[best - 1] = rankOf(part[best - 1], part[best]) }
                    if best < m - 1 { rank[best] = rankOf(part[best], part[best + 1]) }
                }
                out.append(contentsOf: UnsafeBufferPointer(start: part, count: m))
            }
        }
    }
}
