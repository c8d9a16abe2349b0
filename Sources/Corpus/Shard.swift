import Foundation
import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// A token shard: a fixed header, then `count` tokens as little-endian uint16 (when the
/// vocabulary fits) or uint32. Layout (docs/DATA.md):
///
///     offset  size  field
///          0     8  magic "ELLETOKS"
///          8     4  version (1)
///         12     4  bytes per token: 2 (uint16) or 4 (uint32)
///         16     8  token count
///         24     4  vocabulary size (every token is below it)
///         28     4  reserved (0)
///         32     8  XXH64 of the token bytes
///         40     8  XXH64 of header bytes 0..<40
///         48        tokens
///
/// Written to a temporary file and renamed into place, so a shard either exists whole or not at
/// all. Opened read-only with mmap; the header and the token checksum are verified on open.
public final class Shard {
    public static let magic: [UInt8] = Array("ELLETOKS".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 48

    public let path: String
    public let count: Int
    public let tokenBytes: Int
    public let vocabularySize: Int
    public let checksum: UInt64
    private let mapping: UnsafeMutableRawPointer?
    private let mappedSize: Int
    /// First token (inside the mapping).
    public let tokens: UnsafeRawPointer

    /// Bytes per token for a vocabulary: 2 when every id fits in uint16.
    public static func tokenBytes(vocabularySize: Int) -> Int { vocabularySize <= 1 << 16 ? 2 : 4 }

    /// Writes `tokens` as a shard at `path` (temporary file, then rename). Returns the token checksum.
    @discardableResult
    public static func write(_ tokens: UnsafeBufferPointer<Int32>, vocabularySize: Int, to path: String) throws -> UInt64 {
        let width = tokenBytes(vocabularySize: vocabularySize)
        var payload = Data(count: tokens.count * width)
        try payload.withUnsafeMutableBytes { raw in
            for (i, t) in tokens.enumerated() {
                guard t >= 0 && Int(t) < vocabularySize else {
                    throw DataError(path: path, "token \(t) at \(i) is outside the vocabulary of \(vocabularySize)")
                }
                if width == 2 {
                    raw.storeBytes(of: UInt16(t).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                } else {
                    raw.storeBytes(of: UInt32(t).littleEndian, toByteOffset: 4 * i, as: UInt32.self)
                }
            }
        }
        var hasher = XXH64()
        payload.withUnsafeBytes { hasher.update($0) }
        let checksum = hasher.finalize()
        var header = Data(magic)
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { header.append(contentsOf: $0) } }
        append(version)
        append(UInt32(width))
        append(UInt64(tokens.count))
        append(UInt32(vocabularySize))
        append(UInt32(0))
        append(checksum)
        var headerHasher = XXH64()
        header.withUnsafeBytes { headerHasher.update($0) }
        append(headerHasher.finalize())
        try writeAtomically(header + payload, to: path)
        return checksum
    }

    /// Maps and verifies a shard; every problem is an error naming the file.
    public init(path: String, verifyTokens: Bool = true) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw DataError(path: path, errno == ENOENT ? "does not exist" : "cannot be opened (errno \(errno))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError(path: path, "cannot be inspected (errno \(errno))") }
        let size = Int(info.st_size)
        guard size >= Shard.headerSize else {
            throw DataError(path: path, "is truncated: \(size) bytes, shorter than the \(Shard.headerSize)-byte shard header")
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw DataError(path: path, "cannot be memory-mapped (errno \(errno))")
        }
        mapping = map
        mappedSize = size
        let raw = UnsafeRawPointer(map)
        func read<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        guard Array(UnsafeRawBufferPointer(start: raw, count: 8)) == Shard.magic else {
            munmap(map, size)
            throw DataError(path: path, "is not an elle token shard (bad magic; expected \"ELLETOKS\")")
        }
        var headerHasher = XXH64()
        headerHasher.update(UnsafeRawBufferPointer(start: raw, count: 40))
        guard headerHasher.finalize() == read(40, UInt64.self) else {
            munmap(map, size)
            throw DataError(path: path, "has a corrupt shard header (header checksum mismatch)")
        }
        let version = read(8, UInt32.self)
        tokenBytes = Int(read(12, UInt32.self))
        count = Int(read(16, UInt64.self))
        vocabularySize = Int(read(24, UInt32.self))
        checksum = read(32, UInt64.self)
        tokens = raw + Shard.headerSize
        guard version == Shard.version else {
            munmap(map, size)
            throw DataError(path: path, "has shard format version \(version); this elle reads version \(Shard.version)")
        }
        guard tokenBytes == 2 || tokenBytes == 4 else {
            munmap(map, size)
            throw DataError(path: path, "has a corrupt shard header (\(tokenBytes) bytes per token)")
        }
        let expected = Shard.headerSize + count * tokenBytes
        guard size == expected else {
            munmap(map, size)
            throw DataError(path: path, "is truncated or padded: header says \(count) tokens (\(expected) bytes), file has \(size) bytes")
        }
        if verifyTokens {
            var hasher = XXH64()
            hasher.update(UnsafeRawBufferPointer(start: tokens, count: count * tokenBytes))
            guard hasher.finalize() == checksum else {
                munmap(map, size)
                throw DataError(path: path, "has corrupt tokens (checksum mismatch)")
            }
        }
    }

    deinit { if let mapping { munmap(mapping, mappedSize) } }

    /// Token `i` (no bounds check).
    @inline(__always) public subscript(i: Int) -> Int32 {
        tokenBytes == 2 ? Int32(UInt16(littleEndian: tokens.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            : Int32(bitPattern: UInt32(littleEndian: tokens.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
    }

    /// Copies tokens start..<start+n into `destination` as Int32.
    @inline(__always) public func copy(from start: Int, count n: Int, into destination: UnsafeMutablePointer<Int32>) {
        if tokenBytes == 2 {
            let src = tokens.assumingMemoryBound(to: UInt16.self) + start
            for i in 0..<n { destination[i] = Int32(UInt16(littleEndian: src[i])) }
        } else {
            let src = tokens.assumingMemoryBound(to: UInt32.self) + start
            for i in 0..<n { destination[i] = Int32(bitPattern: UInt32(littleEndian: src[i])) }
        }
    }
}

/// Tokens the loader draws windows from: one or more segments (in-memory buffers or mapped
/// shards). Windows never straddle two segments.
public final class TokenStream {
    private enum Segment {
        case memory(Buffer<Int32>)
        case shard(Shard)
        var count: Int {
            switch self {
            case .memory(let b): return b.count
            case .shard(let s): return s.count
            }
        }
    }
    private let segments: [Segment]
    public let count: Int

    public init(_ buffer: Buffer<Int32>) {
        segments = [.memory(buffer)]
        count = buffer.count
    }

    public init(shards: [Shard]) {
        segments = shards.map { .shard($0) }
        count = shards.reduce(0) { $0 + $1.count }
    }

    /// Windows of `seq + 1` tokens at stride `seq` in each segment.
    public func windowCount(seq: Int) -> Int {
        segments.reduce(0) { $0 + max(0, ($1.count - 1) / seq) }
    }

    /// Copies window `w` (segment-major order) as inputs (its first `seq` tokens) and targets
    /// (its last `seq`).
    @inline(__always)
    public func copyWindow(_ w: Int, seq: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        var w = w
        for segment in segments {
            let windows = max(0, (segment.count - 1) / seq)
            if w >= windows { w -= windows; continue }
            switch segment {
            case .memory(let b):
                let src = b.pointer + w * seq
                inputs.update(from: src, count: seq)
                targets.update(from: src + 1, count: seq)
            case .shard(let s):
                s.copy(from: w * seq, count: seq, into: inputs)
                s.copy(from: w * seq + 1, count: seq, into: targets)
            }
            return
        }
        preconditionFailure("window \(w) is past the end of the token stream")
    }

    /// A hash of the tokens, to check that ranks train on the same data: XXH64 of the bytes of
    /// in-memory segments, and each shard's stored token checksum, hashed together in order.
    public var contentHash: UInt64 {
        var h = XXH64()
        for segment in segments {
            switch segment {
            case .memory(let b): h.update(value: XXH64.hash(b.rawBytes))
            case .shard(let s): h.update(value: s.checksum)
            }
        }
        return h.finalize()
    }

    /// All tokens as one array (tests and small data).
    public func toArray() -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(count)
        for segment in segments {
            switch segment {
            case .memory(let b): out += b.toArray()
            case .shard(let s): for i in 0..<s.count { out.append(s[i]) }
            }
        }
        return out
    }
}
