import Dispatch
import Foundation
import Tensors

/// `manifest.json` of a prepared data folder (docs/DATA.md).
public struct DataManifest: Codable, Equatable {
    public struct ShardEntry: Codable, Equatable {
        public var file: String
        public var tokens: Int
        public var xxh64: String
    }
    public struct Split: Codable, Equatable {
        public var tokens: Int
        /// Pieces of text (documents, or parts of long documents) in this split.
        public var pieces: Int
        public var shards: [ShardEntry]
    }
    public struct Domain: Codable, Equatable {
        public var name: String
        public var source: String
        public var files: Int
        public var bytes: Int
        public var promptToken: Int32?
        public var train: Split
        public var valid: Split
        public var memory: Split
    }
    public struct TokenizerEntry: Codable, Equatable {
        public var file: String
        public var source: String
        public var vocabularySize: Int
        public var endOfText: Int32
    }
    public var format = "elle-data"
    public var version = 1
    public var tokenizer: TokenizerEntry
    public var seed: UInt64
    public var validFraction: Double
    public var memoryFraction: Double
    public var tokenBytes: Int
    public var domains: [Domain]

    public static let fileName = "manifest.json"

    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }
}

/// How `elle data prepare` tokenizes and splits.
public struct PrepareOptions {
    public enum TokenizerChoice: Equatable {
        /// GPT-2's vocab.json + merges.txt in this folder.
        case gpt2(folder: String)
        /// A tokenizer.json.
        case file(String)
        /// Train a vocabulary of this size on (a sample of) the raw text.
        case train(vocabularySize: Int)
    }
    public var raw: String
    public var out: String
    public var tokenizer: TokenizerChoice
    public var seed: UInt64 = 1
    /// Share of each domain's tokens held out for validation.
    public var validFraction = 0.05
    /// Share of each domain's training tokens also written to the replay memory split.
    public var memoryFraction = 0.1
    /// Bytes of text (spread over the domains) a trained vocabulary learns from.
    public var trainBytes = 20_000_000
    /// Largest shard, in tokens.
    public var shardTokens = 1 << 26
    public var threads = 1
    /// Only these domains (all when empty).
    public var domains: [String] = []
    /// The longest sequence (tokens) training will use: every split must hold a window of it.
    public var seq = 128

    public init(raw: String, out: String, tokenizer: TokenizerChoice) {
        self.raw = raw
        self.out = out
        self.tokenizer = tokenizer
    }
}

/// Raw domain folders -> tokenizer.json, per-domain train/valid/memory shards and manifest.json.
public enum DataPreparer {
    /// A stretch of one file: a whole document or part of a long one (cut where pre-tokenization
    /// is unaffected). End-of-text follows the piece that ends a file.
    struct Piece {
        var file: Int
        var range: Range<Int>
        var endsDocument: Bool
    }

    struct RawDomain {
        var name: String
        var folder: String
        var files: [String]
        var texts: [[UInt8]]
        var pieces: [Piece] = []
        var bytes: Int { texts.reduce(0) { $0 + $1.count } }
    }

    /// Domains under `raw`: each subfolder holding .txt files (recursively), sorted by name.
    static func listDomains(_ raw: String, only: [String]) throws -> [(name: String, folder: String)] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: raw, isDirectory: &isDirectory) else {
            throw DataError(path: raw, "does not exist")
        }
        guard isDirectory.boolValue else { throw DataError(path: raw, "is not a folder of domain folders") }
        let names = try FileManager.default.contentsOfDirectory(atPath: raw).sorted().filter { name in
            var dir: ObjCBool = false
            return !name.hasPrefix(".") && FileManager.default.fileExists(atPath: raw + "/" + name, isDirectory: &dir) && dir.boolValue
        }
        if names.isEmpty { throw DataError(path: raw, "holds no domain folders (expected RAW/<domain>/*.txt)") }
        if let missing = only.first(where: { !names.contains($0) }) {
            throw DataError(path: raw + "/" + missing, "does not exist (domains here: \(names.joined(separator: ", ")))")
        }
        return names.filter { only.isEmpty || only.contains($0) }.map { ($0, raw + "/" + $0) }
    }

    public static func prepare(_ options: PrepareOptions, log: (String) -> Void = { _ in }) throws -> DataManifest {
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> String { String(format: "%.1fs", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        // 1. Read and check every file.
        var domains: [RawDomain] = []
        for (name, folder) in try listDomains(options.raw, only: options.domains) {
            let files: [String]
            do { files = try TextCorpus.listFiles(folder) } catch {
                throw DataError(path: folder, "is an empty domain (no .txt files)")
            }
            var texts: [[UInt8]] = []
            for file in files { texts.append(try TextCheck.read(file)) }
            var domain = RawDomain(name: name, folder: folder, files: files, texts: texts)
            if domain.bytes == 0 { throw DataError(path: folder, "is an empty domain (its .txt files hold no text)") }
            domain.pieces = cutPieces(domain)
            domains.append(domain)
        }
        log("read \(domains.count) domain(s), \(domains.reduce(0) { $0 + $1.bytes } / 1_000_000) MB in \(elapsed())")

        // 2. The tokenizer, with a prompt token per domain.
        let names = domains.map(\.name)
        let tokenizer: SubwordTokenizer
        let source: String
        switch options.tokenizer {
        case .gpt2(let folder):
            tokenizer = try BPETokenizer.loadGPT2(vocab: folder + "/vocab.json", merges: folder + "/merges.txt", domains: names)
            source = "gpt2"
        case .file(let path):
            tokenizer = try TokenizerFile.load(path)
            for name in names { try tokenizer.assignPrompt(domain: name) }
            source = path
        case .train(let size):
            let sample = trainingSample(domains, bytes: options.trainBytes, seed: options.seed)
            tokenizer = try withExtendedLifetime(domains) {
                try BPETrainer.train(documents: sample, vocabularySize: size, domains: names, threads: options.threads)
            }
            source = "train:\(size) on \(sample.reduce(0) { $0 + $1.count }) bytes"
            log("trained a \(tokenizer.vocabularySize)-token vocabulary in \(elapsed())")
        }
        try FileManager.default.createDirectory(atPath: options.out, withIntermediateDirectories: true)
        removeTemporaries(options.out)
        try tokenizer.save(to: options.out + "/tokenizer.json")

        // 3. Encode all pieces of all domains in parallel, then split and write each domain.
        var entries: [DataManifest.Domain] = []
        for domain in domains {
            let encoded = encode(domain, tokenizer: tokenizer, threads: options.threads)
            let entry = try writeDomain(domain, encoded: encoded, tokenizer: tokenizer, options: options)
            entries.append(entry)
            let total = entry.train.tokens + entry.valid.tokens
            log(String(format: "%@: %d train / %d valid (%.1f%%) / %d memory (%.1f%% of train) tokens; %d / %d / %d sequences of %d (%@)",
                       entry.name, entry.train.tokens, entry.valid.tokens, 100 * Double(entry.valid.tokens) / Double(total),
                       entry.memory.tokens, 100 * Double(entry.memory.tokens) / Double(max(1, entry.train.tokens)),
                       entry.train.tokens / options.seq, entry.valid.tokens / options.seq, entry.memory.tokens / options.seq, options.seq, elapsed()))
            for warning in [shareWarning(entry.name, "valid", tokens: entry.valid.tokens, of: total, asked: options.validFraction),
                            shareWarning(entry.name, "memory", tokens: entry.memory.tokens, of: entry.train.tokens, asked: options.memoryFraction)] {
                if let warning { log(warning) }
            }
        }
        let manifest = DataManifest(
            tokenizer: .init(file: "tokenizer.json", source: source, vocabularySize: tokenizer.vocabularySize, endOfText: tokenizer.endOfText),
            seed: options.seed, validFraction: options.validFraction, memoryFraction: options.memoryFraction,
            tokenBytes: Shard.tokenBytes(vocabularySize: tokenizer.vocabularySize), domains: entries)
        try writeAtomically(try DataManifest.encoder.encode(manifest), to: options.out + "/" + DataManifest.fileName)
        return manifest
    }

    /// Pieces of about domain bytes / 256 (between 64 bytes and 1 MB), so even a one-file or a
    /// small domain has enough pieces for its valid and memory splits to land within half a
    /// point of the shares asked for.
    static func cutPieces(_ domain: RawDomain) -> [Piece] {
        let target = min(1 << 20, max(64, domain.bytes / 256))
        var pieces: [Piece] = []
        for (f, text) in domain.texts.enumerated() where !text.isEmpty {
            let cuts = text.withUnsafeBufferPointer { b in
                [0] + PreTokenizer.safeCuts(b.baseAddress!, b.count, parts: max(1, b.count / target)) + [b.count]
            }
            for k in 0..<(cuts.count - 1) {
                pieces.append(Piece(file: f, range: cuts[k]..<cuts[k + 1], endsDocument: k == cuts.count - 2))
            }
        }
        return pieces
    }

    /// Up to `bytes` of text spread evenly over the domains: each domain's files in a seeded
    /// order until its share is used (whole files; a file larger than the share is cut).
    static func trainingSample(_ domains: [RawDomain], bytes: Int, seed: UInt64) -> [UnsafeBufferPointer<UInt8>] {
        var sample: [UnsafeBufferPointer<UInt8>] = []
        let share = bytes / max(1, domains.count)
        for (d, domain) in domains.enumerated() {
            var rng = Xoshiro256(seed: SeedStream.tokenizerSample(seed: seed, domain: d))
            var order = Array(domain.texts.indices)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
            var used = 0
            for f in order where used < share {
                let take = min(domain.texts[f].count, share - used)
                domain.texts[f].withUnsafeBufferPointer { sample.append(UnsafeBufferPointer(rebasing: $0[0..<take])) }
                used += take
            }
        }
        return sample
    }

    /// Tokens of each piece, end-of-text appended to pieces that end a document.
    static func encode(_ domain: RawDomain, tokenizer: SubwordTokenizer, threads: Int) -> [[Int32]] {
        let count = domain.pieces.count
        let results = UnsafeMutablePointer<[Int32]>.allocate(capacity: count)
        results.initialize(repeating: [], count: count)
        defer { results.deinitialize(count: count); results.deallocate() }
        let workers = max(1, min(threads, count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let encoder = tokenizer.makeEncoder()
            var k = worker
            while k < count {
                let piece = domain.pieces[k]
                var out: [Int32] = []
                domain.texts[piece.file].withUnsafeBufferPointer { encoder.encode(UnsafeBufferPointer(rebasing: $0[piece.range]), into: &out) }
                if piece.endsDocument { out.append(tokenizer.endOfText) }
                results[k] = out
                k += workers
            }
        }
        return Array(UnsafeBufferPointer(start: results, count: count))
    }

    /// Seeded split of a domain's pieces: in an order shuffled by (seed, domain name), the first
    /// pieces go to valid while that brings it closer to validFraction of the tokens (at least one
    /// piece when there are two), the rest to train; memory (the replay buffer) is the next train
    /// pieces in that order while that brings it closer to memoryFraction of the train tokens
    /// (its tokens are also in train). Each split keeps text order. Checks each split holds a
    /// window of `options.seq` tokens (an error naming the domain otherwise) and says when a share
    /// could not come within a point of what was asked (a domain too small to split finer).
    /// Writes the three splits' shards.
    static func writeDomain(_ domain: RawDomain, encoded: [[Int32]], tokenizer: SubwordTokenizer,
                            options: PrepareOptions) throws -> DataManifest.Domain {
        let total = encoded.reduce(0) { $0 + $1.count }
        var rng = Xoshiro256(seed: SeedStream.domainSplit(seed: options.seed, domainHash: domain.name.hashValueStable))
        var order = Array(encoded.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        /// Whether adding `piece` tokens to `have` brings it closer to `target` (or it is empty).
        func closer(_ have: Int, _ piece: Int, _ target: Double) -> Bool {
            have == 0 || abs(Double(have + piece) - target) < abs(Double(have) - target)
        }
        var isValid = [Bool](repeating: false, count: encoded.count)
        var validTokens = 0
        var taken = 0
        let validTarget = options.validFraction * Double(total)
        while taken < order.count - 1 && options.validFraction > 0 && closer(validTokens, encoded[order[taken]].count, validTarget) {
            isValid[order[taken]] = true
            validTokens += encoded[order[taken]].count
            taken += 1
        }
        let trainTokens = total - validTokens
        var isMemory = [Bool](repeating: false, count: encoded.count)
        var memoryTokens = 0
        let memoryTarget = options.memoryFraction * Double(trainTokens)
        for k in order[taken...] {
            guard options.memoryFraction > 0, closer(memoryTokens, encoded[k].count, memoryTarget) else { break }
            isMemory[k] = true
            memoryTokens += encoded[k].count
        }
        try checkSplits(domain, total: total, valid: validTokens, memory: memoryTokens, pieces: encoded.count, options: options)
        let folder = options.out + "/" + domain.name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        func split(_ name: String, _ member: (Int) -> Bool) throws -> DataManifest.Split {
            var tokens: [Int32] = []
            var pieces = 0
            for k in encoded.indices where member(k) { tokens += encoded[k]; pieces += 1 }
            var shards: [DataManifest.ShardEntry] = []
            var start = 0
            repeat {
                let end = min(tokens.count, start + options.shardTokens)
                let file = "\(domain.name)/\(name)-\(String(format: "%03d", shards.count)).bin"
                let checksum = try tokens.withUnsafeBufferPointer {
                    try Shard.write(UnsafeBufferPointer(rebasing: $0[start..<end]), vocabularySize: tokenizer.vocabularySize, to: options.out + "/" + file)
                }
                shards.append(.init(file: file, tokens: end - start, xxh64: String(checksum, radix: 16)))
                start = end
            } while start < tokens.count
            return DataManifest.Split(tokens: tokens.count, pieces: pieces, shards: shards)
        }
        return DataManifest.Domain(
            name: domain.name, source: domain.folder, files: domain.files.count, bytes: domain.bytes,
            promptToken: tokenizer.promptId(domain: domain.name),
            train: try split("train") { !isValid[$0] }, valid: try split("valid") { isValid[$0] },
            memory: try split("memory") { isMemory[$0] })
    }

    /// Every split must hold a window of `options.seq` tokens (found here, not when training
    /// starts); a share more than a point off what was asked is reported as a warning.
    static func checkSplits(_ domain: RawDomain, total: Int, valid: Int, memory: Int, pieces: Int,
                            options: PrepareOptions) throws {
        let train = total - valid, window = options.seq + 1
        let splits = [("train", train, 1.0), ("valid", valid, options.validFraction), ("memory", memory, options.memoryFraction)]
        for (name, tokens, share) in splits where share > 0 && tokens < window {
            throw DataError(path: domain.folder, "domain \(domain.name) is too small: its \(name) split would hold \(tokens) tokens, "
                            + "fewer than one sequence of \(options.seq) (the domain has \(total) tokens in \(pieces) pieces); "
                            + "add text to it, raise --valid-fraction / --memory-fraction, or prepare for shorter sequences with --seq")
        }
    }

    /// The share of a split that is more than a point off what was asked, as a warning line.
    static func shareWarning(_ domain: String, _ split: String, tokens: Int, of total: Int, asked: Double) -> String? {
        let share = Double(tokens) / Double(max(1, total))
        guard abs(share - asked) > 0.01 else { return nil }
        return String(format: "warning: domain %@: the %@ split holds %.1f%% of the tokens (asked %.1f%%): the domain is too small to split finer; add text to it for an exact share",
                      domain, split, 100 * share, 100 * asked)
    }

    /// Deletes temporary files a killed run left behind (`*.tmp-PID`).
    static func removeTemporaries(_ folder: String) {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return }
        for case let name as String in walker where name.contains(".tmp-") {
            try? FileManager.default.removeItem(atPath: folder + "/" + name)
        }
    }
}
