import Foundation
import Tensors

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("safetensors data is little-endian; elle reads and writes it in host order")
#endif

/// The safetensors format (Hugging Face), all integers little-endian:
///
///     0      N            UInt64, length of the JSON header
///     8      header       N bytes of UTF-8 JSON, possibly padded with spaces:
///                         {"__metadata__": {"k": "v", ...},              (optional, strings only)
///                          "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
///     8 + N  data         the tensors' bytes, row-major; offsets are relative to here and must
///                         tile the data exactly (no overlaps, no gaps, nothing after the last)
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32", f64 = "F64", i64 = "I64", u64 = "U64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Types elle converts to Float32 when reading.
    public static let floats: [SafeTensorsDType] = [.f32, .f16, .bf16]
}

/// A malformed safetensors file: "safetensors file PATH message".
public typealias SafeTensorsError = LocatedError<SafeTensorsErrorKind>
public enum SafeTensorsErrorKind: FileErrorKind {
    public static func describe(_ path: String, _ message: String) -> String { "safetensors file \(path) \(message)" }
}

/// A safetensors file, memory-mapped read-only. Opening validates the header and the tensors'
/// offsets against each other and the file size; reading converts F32, F16 and BF16 to Float32.
public final class SafeTensorsFile {
    public struct Tensor: Sendable {
        public var name: String
        public var dtype: SafeTensorsDType
        public var shape: [Int]
        /// Byte range inside the data section.
        public var offsets: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    /// Largest header accepted (the reference implementation's limit).
    public static let maximumHeaderLength = 100_000_000

    public let path: String
    /// Tensors in the order their data appears in the file.
    public let tensors: [Tensor]
    public let metadata: [String: String]
    private let byName: [String: Int]
    private let mapping: UnsafeMutableRawPointer?
    private let fileSize: Int
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafeTensorsError(path: path, "cannot be opened: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw SafeTensorsError(path: path, "cannot be read: \(String(cString: strerror(errno)))") }
        fileSize = Int(info.st_size)
        guard fileSize >= 8 else {
            throw SafeTensorsError(path: path, "is truncated: \(fileSize) bytes, shorter than the 8-byte header length")
        }
        guard let mapped = mmap(nil, fileSize, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw SafeTensorsError(path: path, "cannot be memory-mapped: \(String(cString: strerror(errno)))")
        }
        mapping = mapped
        do {
            let raw = UnsafeRawBufferPointer(start: mapped, count: fileSize)
            let header = try SafeTensorsFile.parseHeader(raw, path: path)
            tensors = header.tensors
            metadata = header.metadata
            dataStart = header.dataStart
            byName = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
        } catch {
            munmap(mapped, fileSize)
            throw error
        }
    }

    deinit {
        if let mapping { munmap(mapping, fileSize) }
    }

    public func tensor(_ name: String) -> Tensor? { byName[name].map { tensors[$0] } }

    /// The tensor's bytes as stored (valid while this object lives).
    public func bytes(of tensor: Tensor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(mapping!) + dataStart + tensor.offsets.lowerBound,
                               count: tensor.offsets.count)
    }

    /// Copies a floating-point tensor into `out` (`tensor.count` values) as Float32.
    public func readFloats(_ tensor: Tensor, into out: UnsafeMutablePointer<Float>) throws {
        let source = bytes(of: tensor)
        let n = tensor.count
        switch tensor.dtype {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: source.baseAddress!, byteCount: n * 4)
        case .f16:
            for i in 0..<n { out[i] = floatFromHalf(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16:
            for i in 0..<n {
                out[i] = Float(bitPattern: UInt32(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            }
        default:
            throw SafeTensorsError(path: path, "tensor \(tensor.name) has dtype \(tensor.dtype.rawValue); elle reads \(SafeTensorsDType.floats.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// A floating-point tensor's values as Float32.
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensor(name) else { throw SafeTensorsError(path: path, "has no tensor \(name)") }
        var values = [Float](repeating: 0, count: t.count)
        try values.withUnsafeMutableBufferPointer { try readFloats(t, into: $0.baseAddress!) }
        return values
    }

    // MARK: header

    private static func parseHeader(_ raw: UnsafeRawBufferPointer, path: String) throws
        -> (tensors: [Tensor], metadata: [String: String], dataStart: Int) {
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(path: path, message) }
        let declared = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        guard declared > 0, declared <= UInt64(raw.count - 8) else {
            throw fail("has a bad header length \(declared): the file has \(raw.count - 8) bytes after the 8-byte length")
        }
        guard declared <= UInt64(maximumHeaderLength) else {
            throw fail("has a bad header length \(declared): more than the \(maximumHeaderLength)-byte limit")
        }
        let headerLength = Int(declared)
        let headerBytes = Data(raw[8..<(8 + headerLength)])
        guard let object = try? JSONSerialization.jsonObject(with: headerBytes), let json = object as? [String: Any] else {
            throw fail("has a header that is not a JSON object (\(headerLength) bytes at offset 8; wrong header length?)")
        }
        var metadata: [String: String] = [:]
        var tensors: [Tensor] = []
        for (name, value) in json {
            if name == "__metadata__" {
                guard let entries = value as? [String: Any] else { throw fail("has a __metadata__ that is not an object") }
                for (key, text) in entries {
                    guard let text = text as? String else { throw fail("has __metadata__ entry \(key) that is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard let entry = value as? [String: Any] else { throw fail("has tensor \(name) whose entry is not an object") }
            guard let dtypeName = entry["dtype"] as? String else { throw fail("has tensor \(name) without a dtype") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw fail("has tensor \(name) of unknown dtype \"\(dtypeName)\" (known: \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shape = integers(entry["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("has tensor \(name) whose shape is not a list of non-negative integers")
            }
            guard let offsets = integers(entry["data_offsets"]), offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw fail("has tensor \(name) whose data_offsets are not [begin, end] with 0 <= begin <= end")
            }
            var count = 1
            for dimension in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw fail("has tensor \(name) whose shape \(shape) overflows") }
                count = product
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, bytes == offsets[1] - offsets[0] else {
                throw fail("has tensor \(name) of shape \(shape) and dtype \(dtypeName), which needs \(overflow ? "too many" : String(bytes)) bytes, but its data_offsets [\(offsets[0]), \(offsets[1])] hold \(offsets[1] - offsets[0])")
            }
            tensors.append(Tensor(name: name, dtype: dtype, shape: shape, offsets: offsets[0]..<offsets[1]))
        }
        tensors.sort { ($0.offsets.lowerBound, $0.offsets.upperBound, $0.name) < ($1.offsets.lowerBound, $1.offsets.upperBound, $1.name) }

        // The tensors must tile the data section exactly.
        let dataStart = 8 + headerLength
        let dataBytes = raw.count - dataStart
        var end = 0
        for (k, t) in tensors.enumerated() where k > 0 && t.offsets.lowerBound < tensors[k - 1].offsets.upperBound {
            let previous = tensors[k - 1]
            throw fail("has overlapping tensors: \(previous.name) [\(previous.offsets.lowerBound), \(previous.offsets.upperBound)] and \(t.name) [\(t.offsets.lowerBound), \(t.offsets.upperBound)]")
        }
        let contiguous = tensors.indices.allSatisfy { k in k == 0 ? tensors[0].offsets.lowerBound == 0 : tensors[k].offsets.lowerBound == tensors[k - 1].offsets.upperBound }
        if let last = tensors.last, last.offsets.upperBound > dataBytes {
            if contiguous {
                throw fail("is truncated: its header describes \(last.offsets.upperBound) bytes of tensor data but only \(dataBytes) follow the header")
            }
            let first = tensors.first { $0.offsets.upperBound > dataBytes }!
            throw fail("has tensor \(first.name) whose data_offsets [\(first.offsets.lowerBound), \(first.offsets.upperBound)] run past the end of the data (\(dataBytes) bytes)")
        }
        for t in tensors {
            guard t.offsets.lowerBound == end else {
                throw fail("has a gap in its data: bytes [\(end), \(t.offsets.lowerBound)) before tensor \(t.name) belong to no tensor")
            }
            end = t.offsets.upperBound
        }
        guard end == dataBytes else {
            throw fail("has \(dataBytes - end) bytes after its last tensor (the header describes \(end) bytes of data, the file holds \(dataBytes))")
        }
        return (tensors, metadata, dataStart)
    }

    /// A JSON array of integers (a number with a fraction is refused).
    private static func integers(_ value: Any?) -> [Int]? {
        guard let list = value as? [Any] else { return nil }
        var out: [Int] = []
        for item in list {
            guard let number = item as? Int else { return nil }
            out.append(number)
        }
        return out
    }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#else
private let systemWrite = Darwin.write
#endif

/// IEEE half -> single precision (exact for every value: normals, subnormals, infinities, NaNs).
@inline(__always)
public func floatFromHalf(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
    // Zero or subnormal: mantissa x 2^-24, exact in Float32.
    let magnitude = Float(mantissa) * 0x1p-24
    return sign != 0 ? -magnitude : magnitude
}

/// One tensor to write: its bytes are `values` (already in `dtype`, host = little-endian order).
public struct SafeTensorsEntry {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    public var bytes: UnsafeRawBufferPointer

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// A Float32 tensor.
    public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        self.init(name: name, dtype: .f32, shape: shape, bytes: UnsafeRawBufferPointer(floats))
    }
}

public enum SafeTensorsWriter {
    /// Writes the tensors, in the given order, to `path` (through a temporary file renamed into
    /// place). The header's keys are sorted and it is padded with spaces so data starts on an
    /// 8-byte boundary, as the reference writer does.
    public static func write(_ entries: [SafeTensorsEntry], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for entry in entries {
            let count = entry.shape.reduce(1, *)
            guard count * entry.dtype.size == entry.bytes.count else {
                throw SafeTensorsError(path: path, "cannot be written: tensor \(entry.name) of shape \(entry.shape) has \(entry.bytes.count) bytes")
            }
            guard header[entry.name] == nil, entry.name != "__metadata__" else {
                throw SafeTensorsError(path: path, "cannot be written: tensor name \(entry.name) repeats")
            }
            header[entry.name] = ["dtype": entry.dtype.rawValue, "shape": entry.shape,
                                  "data_offsets": [offset, offset + entry.bytes.count]] as [String: Any]
            offset += entry.bytes.count
        }
        var json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes]))
        json += [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8)
        var prefix = [UInt8]()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix += $0 }
        prefix += json

        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw SafeTensorsError(path: path, "cannot be written: \(temporary): \(String(cString: strerror(errno)))")
        }
        func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
            var p = bytes.baseAddress
            var remaining = bytes.count
            while remaining > 0, let q = p {
                let n = systemWrite(fd, q, min(remaining, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError(path: path, "cannot be written: \(String(cString: strerror(errno)))")
                }
                p = q + n
                remaining -= n
            }
        }
        do {
            defer { close(fd) }
            try prefix.withUnsafeBytes { try writeAll($0) }
            for entry in entries { try writeAll(entry.bytes) }
            guard fsync(fd) == 0 else { throw SafeTensorsError(path: path, "cannot be written: fsync: \(String(cString: strerror(errno)))") }
        } catch {
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw SafeTensorsError(path: path, "cannot be written: rename from \(temporary): \(reason)")
        }
    }
}
