import Foundation
import Model
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// A checkpoint file: model config, training state, and named float32 tensors.
///
/// Layout (all integers little-endian; see docs/CHECKPOINT.md):
///
///     0   "ELLECKPT"            magic, 8 bytes
///     8   version               UInt32 (currently 1)
///     12  reserved              UInt32 (0)
///     16  header length H       UInt64
///     24  header                H bytes of UTF-8 JSON: config, state, tensor table
///     ..  zero padding          to a multiple of 64
///     D   tensor data           float32, each tensor at D + its `offset` (64-byte aligned)
///     ..  "ELLEEND1"            8 bytes
///     ..  checksum              UInt64, XXH64 (seed 0) of every byte before "ELLEEND1"
///
/// Written to a temporary file in the same folder, fsynced, then renamed over the target, so a
/// crash leaves either the old file or the new one. Loading verifies magic, version, sizes and
/// the checksum before reading anything.
public struct Checkpoint {
    public static let magic = Array("ELLECKPT".utf8)
    public static let endMarker = Array("ELLEEND1".utf8)
    public static let version: UInt32 = 1

    public var config: ModelConfig
    public var state: TrainingState
    /// Tensors by name, e.g. "parameters", "adam.m", "adam.v".
    public var tensors: [(name: String, buffer: FloatBuffer)]

    public init(config: ModelConfig, state: TrainingState, tensors: [(name: String, buffer: FloatBuffer)]) {
        self.config = config
        self.state = state
        self.tensors = tensors
    }

    public func tensor(_ name: String) -> FloatBuffer? { tensors.first { $0.name == name }?.buffer }

    struct TensorEntry: Codable {
        var name: String
        var count: Int
        var offset: Int
    }

    struct Header: Codable {
        var format = "elle-checkpoint"
        var config: ModelConfig
        var state: TrainingState
        var tensors: [TensorEntry]
    }

    // MARK: writing

    /// Atomically writes the checkpoint to `path`.
    public func write(to path: String) throws {
        var entries: [TensorEntry] = []
        var dataBytes = 0
        for (name, buffer) in tensors {
            entries.append(TensorEntry(name: name, count: buffer.count, offset: dataBytes))
            dataBytes += (buffer.count * 4 + 63) / 64 * 64
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = try [UInt8](encoder.encode(Header(config: config, state: state, tensors: entries)))

        var prefix = Checkpoint.magic
        appendLittleEndian(&prefix, Checkpoint.version)
        appendLittleEndian(&prefix, UInt32(0))
        appendLittleEndian(&prefix, UInt64(header.count))
        prefix += header
        prefix += [UInt8](repeating: 0, count: (64 - prefix.count % 64) % 64)

        let file = try AtomicFile(path: path)
        do {
            var hash = XXH64()
            func emit(_ bytes: UnsafeRawBufferPointer) throws {
                hash.update(bytes)
                try file.write(bytes)
            }
            try prefix.withUnsafeBytes { try emit($0) }
            let zeros = [UInt8](repeating: 0, count: 64)
            for (_, buffer) in tensors {
                try emit(buffer.rawBytes)
                let pad = (64 - (buffer.count * 4) % 64) % 64
                try zeros.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) }
            }
            var trailer = Checkpoint.endMarker
            appendLittleEndian(&trailer, hash.finalize())
            try trailer.withUnsafeBytes { try file.write($0) }
            try file.commit()
        } catch {
            file.abandon()
            throw error
        }
    }

    // MARK: reading

    /// Reads and verifies a checkpoint; every failure names the file and what is wrong.
    public static func read(from path: String) throws -> Checkpoint {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw CheckpointError(path: path, "cannot be read: \((error as NSError).localizedDescription)")
        }
        return try data.withUnsafeBytes { raw -> Checkpoint in
            let size = raw.count
            let minimum = 24 + 16
            guard size >= minimum else {
                throw CheckpointError(path: path, "is truncated: \(size) bytes, shorter than any checkpoint")
            }
            guard Array(raw[0..<8]) == magic else {
                throw CheckpointError(path: path, "is not an elle checkpoint (bad magic bytes)")
            }
            let version: UInt32 = loadLittleEndian(raw, 8)
            guard version == Checkpoint.version else {
                throw CheckpointError(path: path, "has format version \(version); this elle reads version \(Checkpoint.version)")
            }
            guard Array(raw[(size - 16)..<(size - 8)]) == endMarker else {
                throw CheckpointError(path: path, "is truncated or incomplete (no end marker)")
            }
            let stored: UInt64 = loadLittleEndian(raw, size - 8)
            let actual = XXH64.hash(UnsafeRawBufferPointer(rebasing: raw[0..<(size - 16)]))
            guard stored == actual else {
                throw CheckpointError(path: path, String(format: "is corrupt: checksum %016llx, expected %016llx", actual, stored))
            }
            let headerLength = Int(loadLittleEndian(raw, 16) as UInt64)
            guard headerLength > 0, 24 + headerLength <= size - 16 else {
                throw CheckpointError(path: path, "has an invalid header length \(headerLength)")
            }
            let header: Header
            do {
                header = try JSONDecoder().decode(Header.self, from: Data(raw[24..<(24 + headerLength)]))
            } catch {
                throw CheckpointError(path: path, "has an unreadable header: \(error)")
            }
            let dataStart = (24 + headerLength + 63) / 64 * 64
            var tensors: [(name: String, buffer: FloatBuffer)] = []
            for entry in header.tensors {
                let start = dataStart + entry.offset, end = start + entry.count * 4
                guard entry.count >= 0, entry.offset >= 0, end <= size - 16 else {
                    throw CheckpointError(path: path, "tensor \(entry.name) (\(entry.count) floats at \(entry.offset)) lies past the end of the file")
                }
                let buffer = FloatBuffer(count: entry.count, zeroed: false)
                UnsafeMutableRawPointer(buffer.pointer).copyMemory(from: raw.baseAddress! + start, byteCount: entry.count * 4)
                tensors.append((entry.name, buffer))
            }
            return Checkpoint(config: header.config, state: header.state, tensors: tensors)
        }
    }
}

/// A checkpoint that cannot be read or written: "checkpoint PATH message".
public typealias CheckpointError = LocatedError<CheckpointErrorKind>
public enum CheckpointErrorKind: FileErrorKind {
    public static func describe(_ path: String, _ message: String) -> String { "checkpoint \(path) \(message)" }
}

/// A file written under a temporary name and renamed into place only when complete and synced.
final class AtomicFile {
    let path: String
    let temporaryPath: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        temporaryPath = path + ".tmp-\(getpid())"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw CheckpointError(path: path, "cannot be written: \(temporaryPath): \(String(cString: strerror(errno)))") }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var p = bytes.baseAddress
        var remaining = bytes.count
        while remaining > 0, let q = p {
            let n = Glibc.write(fd, q, min(remaining, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError(path: path, "write failed: \(String(cString: strerror(errno))); the previous checkpoint is untouched")
            }
            p = q + n
            remaining -= n
        }
    }

    /// fsync, close, rename over the target, fsync the folder.
    func commit() throws {
        if fsync(fd) != 0 {
            throw CheckpointError(path: path, "fsync failed: \(String(cString: strerror(errno))); the previous checkpoint is untouched")
        }
        close(fd)
        fd = -1
        if rename(temporaryPath, path) != 0 {
            throw CheckpointError(path: path, "rename from \(temporaryPath) failed: \(String(cString: strerror(errno)))")
        }
        let folder = (path as NSString).deletingLastPathComponent
        let dirFD = open(folder.isEmpty ? "." : folder, O_RDONLY)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    /// Closes and deletes the temporary file after a failure.
    func abandon() {
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporaryPath)
    }
}

/// Writes a small text file atomically (used for the `latest` pointer).
public func writeFileAtomically(_ text: String, to path: String) throws {
    let file = try AtomicFile(path: path)
    do {
        try Array(text.utf8).withUnsafeBytes { try file.write($0) }
        try file.commit()
    } catch {
        file.abandon()
        throw error
    }
}

func appendLittleEndian<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
    withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
}

func loadLittleEndian<T: FixedWidthInteger>(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> T {
    T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
}
