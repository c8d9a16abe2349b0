/// XXH64 (Yann Collet's xxHash, 64-bit variant), streaming. Used for checkpoint checksums and
/// cross-rank parameter hashes: fast (several GB/s) and a published, testable algorithm.
public struct XXH64 {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1, v2, v3, v4: UInt64
    private let seed: UInt64
    private var totalLength: UInt64 = 0
    private var pending: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var pendingCount = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 {
        (x << r) | (x >> (64 - r))
    }
    @inline(__always) private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }
    @inline(__always) private static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    /// Hashes `bytes` as the continuation of everything given so far.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        totalLength &+= UInt64(bytes.count)
        var p = base
        var remaining = bytes.count
        // Finish a partially filled 32-byte stripe first.
        if pendingCount > 0 {
            withUnsafeMutableBytes(of: &pending) { stripe in
                let take = min(32 - pendingCount, remaining)
                stripe.baseAddress!.advanced(by: pendingCount).copyMemory(from: p, byteCount: take)
                pendingCount += take
                p += take
                remaining -= take
            }
            if pendingCount < 32 { return }
            withUnsafeBytes(of: pending) { stripe in consumeStripe(stripe.baseAddress!) }
            pendingCount = 0
        }
        while remaining >= 32 {
            consumeStripe(p)
            p += 32
            remaining -= 32
        }
        if remaining > 0 {
            withUnsafeMutableBytes(of: &pending) { stripe in
                stripe.baseAddress!.copyMemory(from: p, byteCount: remaining)
            }
            pendingCount = remaining
        }
    }

    @inline(__always)
    private mutating func consumeStripe(_ p: UnsafeRawPointer) {
        v1 = Self.round(v1, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self)))
        v2 = Self.round(v2, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        v3 = Self.round(v3, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        v4 = Self.round(v4, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }

    public mutating func update<T>(value: T) {
        withUnsafeBytes(of: value) { update($0) }
    }

    public func finalize() -> UInt64 {
        var h: UInt64
        if totalLength >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1)
            h = Self.merge(h, v2)
            h = Self.merge(h, v3)
            h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= totalLength
        withUnsafeBytes(of: pending) { stripe in
            var p = stripe.baseAddress!
            var remaining = pendingCount
            while remaining >= 8 {
                let k = Self.round(0, UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
                h ^= k
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                p += 8
                remaining -= 8
            }
            if remaining >= 4 {
                h ^= UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                p += 4
                remaining -= 4
            }
            while remaining > 0 {
                h ^= UInt64(p.load(as: UInt8.self)) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                p += 1
                remaining -= 1
            }
        }
        h ^= h >> 33
        h &*= Self.p2
        h ^= h >> 29
        h &*= Self.p3
        h ^= h >> 32
        return h
    }

    /// One-shot hash of a byte range.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = XXH64(seed: seed)
        h.update(bytes)
        return h.finalize()
    }

    /// One-shot hash of a buffer's contents (its raw bytes).
    public static func hash<T>(_ buffer: Buffer<T>, seed: UInt64 = 0) -> UInt64 {
        hash(buffer.rawBytes, seed: seed)
    }
}
