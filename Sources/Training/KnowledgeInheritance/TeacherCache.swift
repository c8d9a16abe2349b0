import Corpus
import Foundation
import Model
import Tensors

/// The teacher's top-K logits at every position of every training window, computed once
/// (`build`) and read back memory-mapped, so a KI run needs no teacher forward passes.
///
/// File layout (little-endian; docs/KI.md):
///
///     offset  size  field
///          0     8  magic "ELLEKD01"
///          8     8  JSON header length H
///         16     H  JSON header (`Header`)
///     P = 16 + H rounded up to 64
///          P     4 W T K   token ids, int32, [window][position][rank]
///    P + 4WTK    4 W T K   logits, float32, same order (rank 0 the largest)
///
/// A window is the loader's window w of the train stream (tokens w T ..< w T + T + 1 at
/// sequence length T). The header's `payloadXXH64` covers both arrays and is verified on open.
/// Logits, not probabilities, are stored: the teacher's distribution at any temperature tau is
/// the softmax of the K logits / tau, exactly what a live teacher restricted to its top K gives.
public final class TeacherCache {
    public static let magic = Array("ELLEKD01".utf8)

    public struct Header: Codable, Equatable, Sendable {
        public var version = 1
        public var vocab: Int
        public var seq: Int
        public var topK: Int
        public var windows: Int
        /// The train stream the windows come from: token count and `TokenStream.contentHash`.
        public var trainTokens: Int
        public var trainXXH64: String
        public var teacher: String
        public var teacherXXH64: String
        public var teacherConfig: String
        /// Forward FLOPs the teacher spent building the cache (counted as `FLOPCount` does).
        public var teacherFLOPs: Double
        public var payloadXXH64: String
    }

    public let path: String
    public let header: Header
    private let data: NSData
    private let ids: UnsafePointer<Int32>
    private let logits: UnsafePointer<Float>

    /// Opens and verifies a cache file.
    public init(path: String) throws {
        self.path = path
        let data: NSData
        do { data = try NSData(contentsOfFile: path, options: .alwaysMapped) } catch {
            throw DataError(path: path, "cannot be read as a teacher cache: \(error.localizedDescription)")
        }
        let base = data.bytes
        guard data.length >= 16, Array(UnsafeRawBufferPointer(start: base, count: 8)) == Self.magic else {
            throw DataError(path: path, "is not a teacher cache (no ELLEKD01 magic)")
        }
        let h = Int(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        guard h > 0, 16 + h <= data.length else { throw DataError(path: path, "has a header length of \(h) bytes past the end of the file") }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(bytes: base + 16, count: h))
        } catch {
            throw DataError(path: path, "has an unreadable header: \(error)")
        }
        guard header.version == 1 else { throw DataError(path: path, "has version \(header.version); this elle reads version 1") }
        let payload = Self.payloadOffset(headerLength: h)
        let entries = header.windows * header.seq * header.topK
        guard header.windows >= 0, header.seq >= 1, header.topK >= 1, payload + 8 * entries == data.length else {
            throw DataError(path: path, "is \(data.length) bytes but its header (\(header.windows) windows x \(header.seq) positions x top \(header.topK)) needs \(payload + 8 * entries)")
        }
        let hash = String(format: "%016llx", XXH64.hash(UnsafeRawBufferPointer(start: base + payload, count: 8 * entries)))
        guard hash == header.payloadXXH64 else {
            throw DataError(path: path, "is corrupt: its payload hashes to \(hash), its header says \(header.payloadXXH64)")
        }
        self.data = data
        self.header = header
        ids = (base + payload).assumingMemoryBound(to: Int32.self)
        logits = (base + payload + 4 * entries).assumingMemoryBound(to: Float.self)
    }

    static func payloadOffset(headerLength h: Int) -> Int { (16 + h + 63) / 64 * 64 }

    /// Throws unless the cache was built for this train stream, sequence length and vocabulary.
    public func check(train: TokenStream, seq: Int, vocab: Int) throws {
        let hash = String(format: "%016llx", train.contentHash)
        guard header.trainXXH64 == hash, header.trainTokens == train.count else {
            throw DataError(path: path, "was built for other training tokens (\(header.trainTokens) tokens, XXH64 \(header.trainXXH64)) than this run's (\(train.count), \(hash))")
        }
        guard header.seq == seq else { throw DataError(path: path, "was built for sequences of \(header.seq) tokens but the run uses \(seq)") }
        guard header.vocab == vocab else { throw DataError(path: path, "was built with a vocabulary of \(header.vocab) but the student's is \(vocab)") }
    }

    /// The rows of windows `windows[0..<count]` (count x seq rows of K), copied to `ids` and `logits`.
    public func rows(windows: UnsafePointer<Int32>, count: Int,
                     ids outIds: UnsafeMutablePointer<Int32>, logits outLogits: UnsafeMutablePointer<Float>) {
        let per = header.seq * header.topK
        for i in 0..<count {
            let w = Int(windows[i])
            precondition(w >= 0 && w < header.windows, "window \(w) outside the teacher cache's \(header.windows)")
            (outIds + i * per).update(from: ids + w * per, count: per)
            (outLogits + i * per).update(from: logits + w * per, count: per)
        }
    }

    /// Runs `teacher` over every window of `train` (batches of `batch` windows) and writes its
    /// top-K logits to `path` (a temporary file, then renamed). GPT teachers only: a BERT's rows
    /// depend on masks drawn anew at every update. Returns the header.
    @discardableResult
    public static func build(teacher: Teacher, train: TokenStream, seq: Int, topK k: Int, batch: Int,
                             to path: String, progress: (Int, Int) -> Void = { _, _ in }) throws -> Header {
        guard teacher.model.config.architecture == .gpt else {
            throw ConfigError(field: "teacher", message: "\(teacher.source) is a BERT: its predictions depend on masks drawn anew at every update, so it cannot be cached (the run uses the live teacher)")
        }
        let v = teacher.model.config.vocab
        guard k >= 1 && k <= v else { throw ConfigError(field: "top-k", message: "must be in 1...\(v) (got \(k))") }
        guard teacher.model.config.context >= seq else {
            throw ConfigError(field: "seq", message: "\(seq) is longer than the teacher's context \(teacher.model.config.context)")
        }
        let windows = train.windowCount(seq: seq)
        let entries = windows * seq * k
        let idBuffer = Buffer<Int32>(count: max(1, entries)), logitBuffer = FloatBuffer(count: max(1, entries))
        let inputs = Buffer<Int32>(count: batch * seq), targets = Buffer<Int32>(count: batch * seq)
        var first = 0
        while first < windows {
            let rows = min(batch, windows - first)
            for r in 0..<rows {
                train.copyWindow(first + r, seq: seq, inputs: inputs.pointer + r * seq, targets: targets.pointer + r * seq)
            }
            teacher.model.forward(tokens: inputs.pointer, targets: nil, batch: rows, seq: seq, dropoutSeed: nil)
            topK(teacher.model.logits, rows: rows * seq, vocab: v, k: k,
                 ids: idBuffer.pointer + first * seq * k, values: logitBuffer.pointer + first * seq * k)
            first += rows
            progress(first, windows)
        }
        var hasher = XXH64()
        hasher.update(UnsafeRawBufferPointer(start: idBuffer.pointer, count: 4 * entries))
        hasher.update(UnsafeRawBufferPointer(start: logitBuffer.pointer, count: 4 * entries))
        let header = Header(vocab: v, seq: seq, topK: k, windows: windows, trainTokens: train.count,
                            trainXXH64: String(format: "%016llx", train.contentHash), teacher: teacher.source,
                            teacherXXH64: teacher.hashString, teacherConfig: "\(teacher.model.config)",
                            teacherFLOPs: Double(windows * seq) * teacher.forwardFLOPsPerToken(seq: seq),
                            payloadXXH64: String(format: "%016llx", hasher.finalize()))
        let json = try [UInt8](JSONEncoder().encode(header))
        var prefix = Self.magic
        appendLittleEndian(&prefix, UInt64(json.count))
        prefix += json
        prefix += [UInt8](repeating: 0, count: payloadOffset(headerLength: json.count) - prefix.count)
        let file = try AtomicFile(path: path)
        do {
            try prefix.withUnsafeBytes { try file.write($0) }
            try file.write(UnsafeRawBufferPointer(start: idBuffer.pointer, count: 4 * entries))
            try file.write(UnsafeRawBufferPointer(start: logitBuffer.pointer, count: 4 * entries))
            try file.commit()
        } catch {
            file.abandon()
            throw error
        }
        return header
    }
}
