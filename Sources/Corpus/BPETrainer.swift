import Dispatch

/// Learns a byte-level BPE vocabulary from text.
///
/// Pre-tokenized words are counted once (in parallel, one table per thread, then summed), so the
/// merge loop works on unique words with their counts. Pair counts are kept up to date
/// incrementally: a merge visits only the words that hold the merged pair (an index from pair to
/// words), subtracts their old pairs and adds their new ones, and pushes the pairs that gained
/// count onto a max-heap whose stale entries are re-checked when popped. Ties go to the smaller
/// (left id, right id), so the result does not depend on thread count or word order.
public enum BPETrainer {
    /// Trains a tokenizer with exactly `vocabularySize` ids (fewer only if the text runs out of
    /// pairs): 256 bytes, merges, then the specials of `BPETokenizer` with a prompt per domain.
    public static func train(documents: [UnsafeBufferPointer<UInt8>], vocabularySize: Int,
                             domains: [String] = [], threads: Int = 1) throws -> BPETokenizer {
        let specialCount = BPETokenizer.requiredSpecials.count + domains.count + BPETokenizer.sparePrompts
        let mergeTarget = vocabularySize - 256 - specialCount
        guard mergeTarget >= 0 else {
            throw DataError(path: "tokenizer", "a vocabulary of \(vocabularySize) cannot hold 256 bytes and \(specialCount) special tokens")
        }
        let counts = countWords(documents: documents, threads: threads)

        // Unique words as symbol runs in one flat array.
        var symbols: [Int32] = []
        var wordStart: [Int] = [], wordLength: [Int] = [], frequency: [Int64] = []
        counts.forEach { bytes, count in
            wordStart.append(symbols.count)
            wordLength.append(bytes.count)
            frequency.append(Int64(count))
            for b in bytes { symbols.append(Int32(b)) }
        }
        var pairCount: [UInt64: Int64] = [:]
        var wordsWith: [UInt64: [Int32]] = [:]
        pairCount.reserveCapacity(wordStart.count * 2)
        for w in 0..<wordStart.count {
            let s = wordStart[w]
            for k in s..<(s + wordLength[w] - 1) {
                let key = PairTable.key(symbols[k], symbols[k + 1])
                pairCount[key, default: 0] += frequency[w]
                wordsWith[key, default: []].append(Int32(w))
            }
        }
        var heap = PairHeap()
        for (key, count) in pairCount { heap.push(count, key) }

        var tokenBytes: [[UInt8]] = (0..<256).map { [UInt8($0)] }
        var merges: [(Int32, Int32)] = []
        var lastVisit = [Int32](repeating: -1, count: wordStart.count)
        var gained: [UInt64] = []
        while merges.count < mergeTarget, let (count, key) = heap.pop() {
            let current = pairCount[key] ?? 0
            if current != count {
                if current > 0 { heap.push(current, key) }
                continue
            }
            let a = Int32(truncatingIfNeeded: key >> 32), b = Int32(truncatingIfNeeded: key & 0xFFFF_FFFF)
            let merged = Int32(tokenBytes.count)
            let visit = Int32(merges.count)
            merges.append((a, b))
            tokenBytes.append(tokenBytes[Int(a)] + tokenBytes[Int(b)])
            gained.removeAll(keepingCapacity: true)
            for w32 in wordsWith.removeValue(forKey: key) ?? [] {
                let w = Int(w32)
                if lastVisit[w] == visit { continue }
                lastVisit[w] = visit
                let s = wordStart[w], n = wordLength[w], f = frequency[w]
                for k in s..<(s + n - 1) { pairCount[PairTable.key(symbols[k], symbols[k + 1]), default: 0] -= f }
                var read = s, write = s
                while read < s + n {
                    if read + 1 < s + n && symbols[read] == a && symbols[read + 1] == b {
                        symbols[write] = merged; read += 2
                    } else {
                        symbols[write] = symbols[read]; read += 1
                    }
                    write += 1
                }
                wordLength[w] = write - s
                for k in s..<(write - 1) {
                    let pair = PairTable.key(symbols[k], symbols[k + 1])
                    pairCount[pair, default: 0] += f
                    if symbols[k] == merged || symbols[k + 1] == merged {
                        wordsWith[pair, default: []].append(w32)
                        gained.append(pair)
                    }
                }
            }
            pairCount[key] = nil
            for pair in Set(gained) {
                if let c = pairCount[pair], c > 0 { heap.push(c, pair) }
            }
        }
        return try BPETokenizer(tokenBytes: tokenBytes, merges: merges, domains: domains)
    }

    /// Counts of each pre-tokenized word over all documents (long documents are cut where
    /// pre-tokenization is unaffected so threads share the work).
    static func countWords(documents: [UnsafeBufferPointer<UInt8>], threads: Int) -> ByteStringTable {
        var units: [UnsafeBufferPointer<UInt8>] = []
        let piece = 1 << 20
        for doc in documents {
            guard let base = doc.baseAddress, doc.count > 0 else { continue }
            let cuts = [0] + PreTokenizer.safeCuts(base, doc.count, parts: max(1, doc.count / piece)) + [doc.count]
            for k in 0..<(cuts.count - 1) { units.append(UnsafeBufferPointer(rebasing: doc[cuts[k]..<cuts[k + 1]])) }
        }
        let workers = max(1, min(threads, units.count))
        let tables = (0..<workers).map { _ in ByteStringTable(capacity: 1 << 16) }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let table = tables[worker]
            var u = worker
            while u < units.count {
                let unit = units[u]
                PreTokenizer.split(unit.baseAddress!, unit.count) { start, end in
                    table.add(unit.baseAddress! + start, end - start, amount: 1)
                }
                u += workers
            }
        }
        let total = tables[0]
        for table in tables.dropFirst() {
            table.forEach { bytes, count in total.add(bytes.baseAddress!, bytes.count, amount: count) }
        }
        return total
    }
}

/// Max-heap of (count, pair key); ties pop the smaller key first.
struct PairHeap {
    private var counts: [Int64] = []
    private var keys: [UInt64] = []

    @inline(__always) private func above(_ i: Int, _ j: Int) -> Bool {
        counts[i] > counts[j] || (counts[i] == counts[j] && keys[i] < keys[j])
    }

    private mutating func swapAt(_ i: Int, _ j: Int) {
        counts.swapAt(i, j)
        keys.swapAt(i, j)
    }

    mutating func push(_ count: Int64, _ key: UInt64) {
        counts.append(count)
        keys.append(key)
        var i = counts.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !above(i, parent) { break }
            swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (Int64, UInt64)? {
        guard let count = counts.first, let key = keys.first else { return nil }
        let last = counts.count - 1
        swapAt(0, last)
        counts.removeLast()
        keys.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var top = i
            if l < counts.count && above(l, top) { top = l }
            if r < counts.count && above(r, top) { top = r }
            if top == i { break }
            swapAt(i, top)
            i = top
        }
        return (count, key)
    }
}
