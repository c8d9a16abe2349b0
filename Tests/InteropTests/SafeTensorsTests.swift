import Foundation
import Interop
import TestSupport
import XCTest

/// The safetensors reader and writer: round trips, a file written by Python's `safetensors`
/// (scripts/make_interop_fixture.py), and every kind of malformed file.
final class SafeTensorsTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("safetensors") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func testWriteThenReadGivesTheSameBits() throws {
        let a: [Float] = [1, -0.0, .infinity, .leastNonzeroMagnitude, 3.25, -7e20]
        let b: [Int32] = [7, -1, Int32.max]
        let path = folder + "/x.safetensors"
        try a.withUnsafeBufferPointer { av in
            try b.withUnsafeBytes { bv in
                try SafeTensorsWriter.write([
                    SafeTensorsEntry(name: "a/weights", shape: [2, 3], floats: av),
                    SafeTensorsEntry(name: "b", dtype: .i32, shape: [3], bytes: bv),
                    SafeTensorsEntry(name: "empty", shape: [0, 4], floats: UnsafeBufferPointer(start: av.baseAddress, count: 0)),
                ], metadata: ["format": "pt", "note": "quote \" and slash /"], to: path)
            }
        }
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "quote \" and slash /"])
        XCTAssertEqual(file.tensors.map(\.name), ["a/weights", "b", "empty"], "data order is write order")
        XCTAssertEqual(file.tensor("a/weights")?.shape, [2, 3])
        XCTAssertEqual(try file.floats("a/weights").map(\.bitPattern), a.map(\.bitPattern))
        XCTAssertEqual(Array(file.bytes(of: file.tensor("b")!).bindMemory(to: Int32.self)), b)
        XCTAssertEqual(try file.floats("empty"), [])
        // The header is padded so data starts 8-byte aligned, as the reference writer does.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + headerLength) % 8, 0)
        XCTAssertEqual(raw.count, 8 + Int(headerLength) + 6 * 4 + 3 * 4)
        XCTAssertThrowsError(try file.floats("b")) { error in
            XCTAssertTrue("\(error)".contains("tensor b has dtype I32"), "\(error)")
        }
    }

    /// A file written by Python's safetensors from torch tensors: values (as float32 bit patterns
    /// from torch's own conversion), dtypes, shapes and metadata.
    func testReadsFileWrittenByPythonSafetensors() throws {
        let file = try SafeTensorsFile(path: fixtureURL("safetensors-dtypes.safetensors").path)
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtureURL("safetensors-dtypes.json"))) as! [String: [String: Any]]
        XCTAssertEqual(file.metadata["format"], "pt")
        XCTAssertEqual(file.metadata["made_by"], "scripts/make_interop_fixture.py")
        let dtypes: [String: SafeTensorsDType] = ["f32": .f32, "f16": .f16, "bf16": .bf16]
        XCTAssertEqual(Set(expected.keys), Set(dtypes.keys))
        for (name, dtype) in dtypes {
            let tensor = try XCTUnwrap(file.tensor(name))
            XCTAssertEqual(tensor.dtype, dtype, name)
            XCTAssertEqual(tensor.shape, expected[name]!["shape"] as? [Int], name)
            XCTAssertEqual(try file.floats(name).map(\.bitPattern), (expected[name]!["bits"] as! [Int]).map { UInt32($0) }, name)
        }
        XCTAssertEqual(file.tensor("i64")?.dtype, .i64)
        XCTAssertEqual(Array(file.bytes(of: file.tensor("i64")!).bindMemory(to: Int64.self)), [1, -2, 3])
        XCTAssertThrowsError(try file.floats("i64")) { error in
            XCTAssertTrue("\(error)".contains("has dtype I64; elle reads F32, F16, BF16"), "\(error)")
        }
    }

    /// Every half-precision bit pattern converts as the hardware's Float16 does.
    func testHalfToFloatIsExactForEveryBitPattern() throws {
        #if arch(x86_64) || arch(arm64)
        for h in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: h))
            let actual = floatFromHalf(h)
            if expected.isNaN {
                XCTAssertTrue(actual.isNaN, "\(h)")
            } else if actual.bitPattern != expected.bitPattern {
                XCTFail("half \(String(h, radix: 16)): \(actual) != \(expected)")
                return
            }
        }
        #else
        throw XCTSkip("no Float16 on this platform")
        #endif
    }

    // MARK: malformed files

    /// A file of an 8-byte length (declared, or the header's own), the header text and data bytes.
    func makeFile(_ name: String, header: String, data: Int, declaredLength: UInt64? = nil) -> String {
        var bytes = [UInt8]()
        withUnsafeBytes(of: (declaredLength ?? UInt64(header.utf8.count)).littleEndian) { bytes += $0 }
        bytes += Array(header.utf8)
        bytes += [UInt8](repeating: 0x3F, count: data)
        let path = folder + "/" + name + ".safetensors"
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func assertRejected(_ path: String, _ phrase: String, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(path: path), line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(path), "error does not name the file: \(text)", line: line)
            XCTAssertTrue(text.contains(phrase), "expected \"\(phrase)\" in: \(text)", line: line)
        }
    }

    func testMalformedFilesGetClearErrors() throws {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2,2],"data_offsets":[8,16]}}"#
        XCTAssertNoThrow(try SafeTensorsFile(path: makeFile("ok", header: ok, data: 16)))

        let short = folder + "/short.safetensors"
        _ = FileManager.default.createFile(atPath: short, contents: Data([1, 2, 3]))
        assertRejected(short, "is truncated: 3 bytes, shorter than the 8-byte header length")
        assertRejected(makeFile("length-past-end", header: ok, data: 16, declaredLength: 1 << 40), "bad header length 1099511627776")
        assertRejected(makeFile("length-zero", header: ok, data: 16, declaredLength: 0), "bad header length 0")
        assertRejected(makeFile("length-short", header: ok, data: 16, declaredLength: 20), "not a JSON object")
        assertRejected(makeFile("not-json", header: "[1, 2]", data: 0), "not a JSON object")
        assertRejected(makeFile("dtype", header: #"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, data: 8),
                       "tensor a of unknown dtype \"F33\"")
        assertRejected(makeFile("no-dtype", header: #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: 8), "tensor a without a dtype")
        assertRejected(makeFile("shape", header: #"{"a":{"dtype":"F32","shape":[3, 2],"data_offsets":[0,8]}}"#, data: 8),
                       "tensor a of shape [3, 2] and dtype F32, which needs 24 bytes, but its data_offsets [0, 8] hold 8")
        assertRejected(makeFile("negative-shape", header: #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: 8),
                       "tensor a whose shape is not a list of non-negative integers")
        assertRejected(makeFile("reversed", header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: 8),
                       "tensor a whose data_offsets are not [begin, end]")
        assertRejected(makeFile("past-end", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[64,72]}}"#, data: 16),
                       "tensor b whose data_offsets [64, 72] run past the end of the data (16 bytes)")
        assertRejected(makeFile("overlap", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12),
                       "overlapping tensors: a [0, 8] and b [4, 12]")
        assertRejected(makeFile("gap", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#, data: 20),
                       "gap in its data: bytes [8, 12) before tensor b")
        assertRejected(makeFile("trailing", header: ok, data: 20), "4 bytes after its last tensor")
        assertRejected(makeFile("metadata", header: #"{"__metadata__":{"k":3}}"#, data: 0), "__metadata__ entry k that is not a string")
        assertRejected(folder + "/missing.safetensors", "cannot be opened")

        // A good file cut short anywhere in its data.
        let a = [Float](repeating: 1.5, count: 64)
        let whole = folder + "/whole.safetensors"
        try a.withUnsafeBufferPointer { try SafeTensorsWriter.write([SafeTensorsEntry(name: "w", shape: [8, 8], floats: $0)], to: whole) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: whole))
        let cut = folder + "/cut.safetensors"
        _ = FileManager.default.createFile(atPath: cut, contents: bytes.prefix(bytes.count - 10))
        assertRejected(cut, "is truncated: its header describes 256 bytes of tensor data but only 246 follow the header")
        _ = FileManager.default.createFile(atPath: cut, contents: bytes.prefix(20))
        assertRejected(cut, "bad header length")
    }
}
