#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hash of a short byte string: 8 bytes per multiply (no per-byte loop for most words).
@inline(__always)
func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
    var h: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(n &+ 1)
    var i = 0
    while i + 8 <= n {
        let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
        h = (h ^ w) &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 32
        i += 8
    }
    if i < n {
        var w: UInt64 = 0
        var shift: UInt64 = 0
        while i < n { w |= UInt64(p[i]) << shift; shift += 8; i += 1 }
        h = (h ^ w) &* 0xC4CE_B9FE_1A85_EC53
    }
    h ^= h >> 29
    h = h &* 0xBF58_476D_1CE4_E5B9
    return (h ^ (h >> 32)) | 1  // never 0: 0 marks an empty slot
}

/// Open-addressing map from a pair of token ids to a token id: "these two adjacent tokens merge
/// into that one". Lookups are one multiply and usually one probe.
struct PairTable {
    private var keys: [UInt64]
    private var values: [Int32]
    private let mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: UInt64.max, count: size)
        values = [Int32](repeating: -1, count: size)
        mask = size - 1
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
    }

    /// Keeps the smaller id when a pair is inserted twice (tiktoken keeps the lowest rank).
    mutating func insert(_ a: Int32, _ b: Int32, _ value: Int32) {
        let k = PairTable.key(a, b)
        var s = slot(k)
        while keys[s] != UInt64.max {
            if keys[s] == k { values[s] = min(values[s], value); return }
            s = (s + 1) & mask
        }
        keys[s] = k
        values[s] = value
        count += 1
    }

    /// The merged id, or -1.
    @inline(__always) func lookup(_ a: Int32, _ b: Int32) -> Int32 {
        let k = PairTable.key(a, b)
        var s = slot(k)
        return keys.withUnsafeBufferPointer { keys in
            values.withUnsafeBufferPointer { values in
                while true {
                    let stored = keys[s]
                    if stored == k { return values[s] }
                    if stored == UInt64.max { return -1 }
                    s = (s + 1) & mask
                }
            }
        }
    }
}

/// Open-addressing map from byte strings to a run of token ids, with the keys and values kept
/// in two growing arenas. Used for the vocabulary (string -> id) and for per-thread caches of
/// encoded words. `clear()` empties it in O(slots) without freeing.
final class ByteStringTable {
    private var hashes: UnsafeMutablePointer<UInt64>
    private var keyStart: UnsafeMutablePointer<Int32>
    private var keyLength: UnsafeMutablePointer<Int32>
    private var valueStart: UnsafeMutablePointer<Int32>
    private var valueCount: UnsafeMutablePointer<Int32>
    private(set) var keyBytes: [UInt8] = []
    private(set) var valueTokens: [Int32] = []
    private(set) var slots: Int
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = size
        mask = size - 1
        hashes = .allocate(capacity: size)
        keyStart = .allocate(capacity: size)
        keyLength = .allocate(capacity: size)
        valueStart = .allocate(capacity: size)
        valueCount = .allocate(capacity: size)
        hashes.initialize(repeating: 0, count: size)
    }

    deinit {
        hashes.deallocate(); keyStart.deallocate(); keyLength.deallocate()
        valueStart.deallocate(); valueCount.deallocate()
    }

    func clear() {
        hashes.update(repeating: 0, count: slots)
        keyBytes.removeAll(keepingCapacity: true)
        valueTokens.removeAll(keepingCapacity: true)
        count = 0
    }

    /// The slot holding `p[0..<n]`, or the empty slot where it would go (negative: -slot - 1).
    @inline(__always)
    private func find(_ p: UnsafePointer<UInt8>, _ n: Int, _ h: UInt64) -> Int {
        var s = Int(truncatingIfNeeded: h >> 7) & mask
        return keyBytes.withUnsafeBufferPointer { arena in
            while true {
                let stored = hashes[s]
                if stored == 0 { return -s - 1 }
                if stored == h && Int(keyLength[s]) == n && memcmp(arena.baseAddress! + Int(keyStart[s]), p, n) == 0 {
                    return s
                }
                s = (s + 1) & mask
            }
        }
    }

    /// Appends the stored tokens for `p[0..<n]` to `out` and returns true, or returns false.
    @inline(__always)
    func appendValue(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, to out: inout [Int32]) -> Bool {
        let s = find(p, n, h)
        if s < 0 { return false }
        let start = Int(valueStart[s]), c = Int(valueCount[s])
        if c == 1 {
            out.append(valueTokens[start])
        } else {
            valueTokens.withUnsafeBufferPointer { out.append(contentsOf: $0[start..<(start + c)]) }
        }
        return true
    }

    /// The first stored token for the key, or -1.
    func firstValue(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        let s = find(p, n, hashBytes(p, n))
        return s < 0 ? -1 : valueTokens[Int(valueStart[s])]
    }

    func firstValue(_ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBufferPointer { firstValue($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, bytes.count) }
    }

    /// Stores `tokens` for the key (the key must not be present). Grows when half full.
    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, tokens: UnsafeBufferPointer<Int32>) {
        if (count + 1) * 2 > slots { grow() }
        let s = -find(p, n, h) - 1
        precondition(s >= 0, "ByteStringTable.insert: key already present")
        hashes[s] = h
        keyStart[s] = Int32(keyBytes.count)
        keyLength[s] = Int32(n)
        keyBytes.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
        valueStart[s] = Int32(valueTokens.count)
        valueCount[s] = Int32(tokens.count)
        valueTokens.append(contentsOf: tokens)
        count += 1
    }

    func insert(_ bytes: [UInt8], token: Int32) {
        bytes.withUnsafeBufferPointer { key in
            [token].withUnsafeBufferPointer { value in
                let p = key.baseAddress ?? UnsafePointer(bitPattern: 1)!
                insert(p, key.count, hash: hashBytes(p, key.count), tokens: value)
            }
        }
    }

    /// Adds `amount` to the single counter stored for the key (inserting it at 0 first): word
    /// counting for tokenizer training. Returns the slot.
    @inline(__always)
    func add(_ p: UnsafePointer<UInt8>, _ n: Int, amount: Int32) {
        let h = hashBytes(p, n)
        let s = find(p, n, h)
        if s >= 0 {
            valueTokens[Int(valueStart[s])] &+= amount
        } else {
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: 1) { one in
                one[0] = amount
                insert(p, n, hash: h, tokens: UnsafeBufferPointer(one))
            }
        }
    }

    /// Calls `body(key bytes, first value)` for every entry.
    func forEach(_ body: (UnsafeBufferPointer<UInt8>, Int32) -> Void) {
        keyBytes.withUnsafeBufferPointer { arena in
            for s in 0..<slots where hashes[s] != 0 {
                body(UnsafeBufferPointer(start: arena.baseAddress! + Int(keyStart[s]), count: Int(keyLength[s])),
                     valueTokens[Int(valueStart[s])])
            }
        }
    }

    private func grow() {
        let oldSlots = slots, oldHashes = hashes, oldStart = keyStart, oldLength = keyLength
        let oldValueStart = valueStart, oldValueCount = valueCount
        slots *= 2
        mask = slots - 1
        hashes = .allocate(capacity: slots)
        keyStart = .allocate(capacity: slots)
        keyLength = .allocate(capacity: slots)
        valueStart = .allocate(capacity: slots)
        valueCount = .allocate(capacity: slots)
        hashes.initialize(repeating: 0, count: slots)
        for s in 0..<oldSlots where oldHashes[s] != 0 {
            var t = Int(truncatingIfNeeded: oldHashes[s] >> 7) & mask
            while hashes[t] != 0 { t = (t + 1) & mask }
            hashes[t] = oldHashes[s]
            keyStart[t] = oldStart[s]; keyLength[t] = oldLength[s]
            valueStart[t] = oldValueStart[s]; valueCount[t] = oldValueCount[s]
        }
        oldHashes.deallocate(); oldStart.deallocate(); oldLength.deallocate()
        oldValueStart.deallocate(); oldValueCount.deallocate()
    }
}
