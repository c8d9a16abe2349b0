#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Hash tables for the tokenizer. Storage is raw memory owned by final classes: the shared,
// read-only tables are read on several threads through `Reader` values of plain pointers, so hot
// loops touch no reference counts (threads updating one shared counter would fight over its
// cache line and run no faster than one).

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

/// Growable raw array of trivial values (no copy-on-write, no reference count on access).
struct RawArena<T> {
    private(set) var base: UnsafeMutablePointer<T>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(16, capacity)
        base = .allocate(capacity: self.capacity)
    }

    func free() { base.deallocate() }

    mutating func removeAll() { count = 0 }

    mutating func append(_ p: UnsafePointer<T>, _ n: Int) {
        if count + n > capacity {
            var grown = capacity * 2
            while grown < count + n { grown *= 2 }
            let fresh = UnsafeMutablePointer<T>.allocate(capacity: grown)
            fresh.moveInitialize(from: base, count: count)
            base.deallocate()
            base = fresh
            capacity = grown
        }
        (base + count).initialize(from: p, count: n)
        count += n
    }
}

/// Open-addressing map from a pair of token ids to a token id: "these two adjacent tokens merge
/// into that one". Lookups are one multiply and usually one probe.
final class PairTable {
    private let keys: UnsafeMutablePointer<UInt64>
    private let values: UnsafeMutablePointer<Int32>
    private let size: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        self.size = size
        keys = .allocate(capacity: size)
        keys.initialize(repeating: UInt64.max, count: size)
        values = .allocate(capacity: size)
        values.initialize(repeating: -1, count: size)
    }

    deinit { keys.deallocate(); values.deallocate() }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Keeps the smaller id when a pair is inserted twice (tiktoken keeps the lowest rank).
    func insert(_ a: Int32, _ b: Int32, _ value: Int32) {
        precondition((count + 1) * 2 <= size, "PairTable is full")
        let k = PairTable.key(a, b)
        var s = reader.slot(k)
        while keys[s] != UInt64.max {
            if keys[s] == k { values[s] = min(values[s], value); return }
            s = (s + 1) & (size - 1)
        }
        keys[s] = k
        values[s] = value
        count += 1
    }

    /// Valid while this table is alive.
    var reader: Reader { Reader(keys: keys, values: values, mask: size - 1) }

    struct Reader {
        let keys: UnsafePointer<UInt64>
        let values: UnsafePointer<Int32>
        let mask: Int

        @inline(__always) func slot(_ k: UInt64) -> Int {
            Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
        }

        /// The merged id, or -1.
        @inline(__always) func lookup(_ a: Int32, _ b: Int32) -> Int32 {
            let k = PairTable.key(a, b)
            var s = slot(k)
            while true {
                let stored = keys[s]
                if stored == k { return values[s] }
                if stored == UInt64.max { return -1 }
                s = (s + 1) & mask
            }
        }
    }
}

/// Open-addressing map from byte strings to a run of token ids, keys and values kept in two
/// arenas. Used for the vocabulary (string -> id), per-thread caches of encoded words, and word
/// counts in training. `clear()` empties it in O(slots) without freeing.
final class ByteStringTable {
    private var hashes: UnsafeMutablePointer<UInt64>
    /// Per slot: key start, key length, value start, value count.
    private var entries: UnsafeMutablePointer<SIMD4<Int32>>
    private var keyBytes = RawArena<UInt8>(capacity: 1 << 16)
    private var valueTokens = RawArena<Int32>(capacity: 1 << 14)
    private(set) var slots: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = size
        hashes = .allocate(capacity: size)
        hashes.initialize(repeating: 0, count: size)
        entries = .allocate(capacity: size)
    }

    deinit {
        hashes.deallocate(); entries.deallocate()
        keyBytes.free(); valueTokens.free()
    }

    func clear() {
        hashes.update(repeating: 0, count: slots)
        keyBytes.removeAll()
        valueTokens.removeAll()
        count = 0
    }

    /// Valid while this table is alive and unchanged.
    var reader: Reader {
        Reader(hashes: hashes, entries: entries, keyBytes: keyBytes.base, valueTokens: valueTokens.base, mask: slots - 1)
    }

    struct Reader {
        let hashes: UnsafePointer<UInt64>
        let entries: UnsafePointer<SIMD4<Int32>>
        let keyBytes: UnsafePointer<UInt8>
        let valueTokens: UnsafePointer<Int32>
        let mask: Int

        /// The slot holding `p[0..<n]`, or the empty slot where it would go as -slot - 1.
        @inline(__always)
        func find(_ p: UnsafePointer<UInt8>, _ n: Int, _ h: UInt64) -> Int {
            var s = Int(truncatingIfNeeded: h >> 7) & mask
            while true {
                let stored = hashes[s]
                if stored == 0 { return -s - 1 }
                if stored == h {
                    let e = entries[s]
                    if Int(e[1]) == n && memcmp(keyBytes + Int(e[0]), p, n) == 0 { return s }
                }
                s = (s + 1) & mask
            }
        }

        /// The first stored token of a slot `find` returned.
        @inline(__always)
        func value(at slot: Int) -> Int32 { valueTokens[Int(entries[slot][2])] }

        /// Appends the stored tokens for `p[0..<n]` to `out` and returns true, or returns false.
        @inline(__always)
        func appendValue(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, to out: inout [Int32]) -> Bool {
            let s = find(p, n, h)
            if s < 0 { return false }
            let e = entries[s]
            if e[3] == 1 {
                out.append(valueTokens[Int(e[2])])
            } else {
                out.append(contentsOf: UnsafeBufferPointer(start: valueTokens + Int(e[2]), count: Int(e[3])))
            }
            return true
        }
    }

    @inline(__always)
    func appendValue(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, to out: inout [Int32]) -> Bool {
        reader.appendValue(p, n, hash: h, to: &out)
    }

    /// The first stored token for the key, or -1.
    func firstValue(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        let r = reader
        let s = r.find(p, n, hashBytes(p, n))
        return s < 0 ? -1 : valueTokens.base[Int(entries[s][2])]
    }

    func firstValue(_ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBufferPointer { firstValue($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, bytes.count) }
    }

    /// Stores `tokens` for the key (which must not be present). Grows when half full.
    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, tokens: UnsafeBufferPointer<Int32>) {
        if (count + 1) * 2 > slots { grow() }
        let s = -reader.find(p, n, h) - 1
        precondition(s >= 0, "ByteStringTable.insert: key already present")
        hashes[s] = h
        entries[s] = SIMD4(Int32(keyBytes.count), Int32(n), Int32(valueTokens.count), Int32(tokens.count))
        keyBytes.append(p, n)
        if let base = tokens.baseAddress { valueTokens.append(base, tokens.count) }
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
    /// counting for tokenizer training.
    @inline(__always)
    func add(_ p: UnsafePointer<UInt8>, _ n: Int, amount: Int32) {
        let h = hashBytes(p, n)
        let s = reader.find(p, n, h)
        if s >= 0 {
            valueTokens.base[Int(entries[s][2])] &+= amount
        } else {
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: 1) { one in
                one[0] = amount
                insert(p, n, hash: h, tokens: UnsafeBufferPointer(one))
            }
        }
    }

    /// Calls `body(key bytes, first value)` for every entry.
    func forEach(_ body: (UnsafeBufferPointer<UInt8>, Int32) -> Void) {
        for s in 0..<slots where hashes[s] != 0 {
            let e = entries[s]
            body(UnsafeBufferPointer(start: keyBytes.base + Int(e[0]), count: Int(e[1])), valueTokens.base[Int(e[2])])
        }
    }

    private func grow() {
        let oldSlots = slots, oldHashes = hashes, oldEntries = entries
        slots *= 2
        hashes = .allocate(capacity: slots)
        hashes.initialize(repeating: 0, count: slots)
        entries = .allocate(capacity: slots)
        let mask = slots - 1
        for s in 0..<oldSlots where oldHashes[s] != 0 {
            var t = Int(truncatingIfNeeded: oldHashes[s] >> 7) & mask
            while hashes[t] != 0 { t = (t + 1) & mask }
            hashes[t] = oldHashes[s]
            entries[t] = oldEntries[s]
        }
        oldHashes.deallocate(); oldEntries.deallocate()
    }
}
