import Foundation
import TensorBoard
import TestSupport
import XCTest

final class EventFileTests: XCTestCase {
    /// The events of Tests/Fixtures/tensorboard, as scripts/make_tensorboard_fixture.py writes
    /// them with TensorBoard's own protocol buffers and record writer.
    static let note = "stage 1/3 (literature) done: literature 12.34 | AP 12.34 | AP+ 0.00 — é 文"
    static let fixtureEvents: [Event] = [
        Event(wallTime: 1700000000.0, step: 0, content: .fileVersion("brain.Event:2")),
        Event(wallTime: 1700000001.5, step: 1, content: .scalars([("train/loss", 5.25), ("train/lr", 1e-3)])),
        Event(wallTime: 1700000002.25, step: 2, content: .scalars([("train/loss", 4.5), ("train/lr", 2e-3)])),
        Event(wallTime: 1700000002.5, step: 2, content: .text(tag: "notes", text: note)),
        Event(wallTime: 1700000003.0, step: 3, content: .scalars([("train/loss", 4.0), ("eval/perplexities/literature", Float(54.598150033144236)),
                                                                  ("train/replay_share", 0.0), ("growth/delta", -1.5)])),
        Event(wallTime: 1700000004.0, step: 4, content: .scalars([("train/loss", 3.5)])),
        Event(wallTime: 1700000010.0, step: 4, content: .sessionStart),
        Event(wallTime: 1700000011.0, step: 4, content: .scalars([("train/loss", 3.75)])),
        Event(wallTime: 1700000012.0, step: 300, content: .scalars([("train/loss", 3.25)])),
    ]

    /// Must show 1 (CI half): the records elle writes are byte for byte the file TensorBoard's
    /// writer made and its EventAccumulator read (scalars, text note, restart), CRCs included.
    func testWritesTheBytesOfTensorBoardsFixture() throws {
        let fixture = try [UInt8](Data(contentsOf: fixtureURL("tensorboard/events.out.tfevents.1700000000.fixture.1.elle")))
        let written = Self.fixtureEvents.flatMap { TFRecord.frame($0.encoded) }
        XCTAssertEqual(written.count, fixture.count)
        // Compare record by record, so a failure names the event.
        var offset = 0
        for (k, event) in Self.fixtureEvents.enumerated() {
            let record = TFRecord.frame(event.encoded)
            XCTAssertEqual(Array(fixture[offset..<min(fixture.count, offset + record.count)]), record, "event \(k): \(event.content)")
            offset += record.count
        }
        XCTAssertEqual(written, fixture)
    }

    func testCRC32CKnownValues() {
        // RFC 3720 B.4 test vectors and the classic "123456789" check value.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    }

    /// The framing reads back: lengths, both CRCs, payloads; a flipped bit breaks the data CRC.
    func testFramesReadBack() throws {
        let payloads = Self.fixtureEvents.map(\.encoded)
        let bytes = payloads.flatMap(TFRecord.frame)
        XCTAssertEqual(try readRecords(bytes), payloads)
        var corrupt = bytes
        corrupt[20] ^= 1
        XCTAssertThrowsError(try readRecords(corrupt))
    }

    /// A writer's file starts with the version record, holds every record flushed at once (a
    /// reader sees them while the run goes on), and a second writer in the same folder makes a
    /// second file.
    func testWriterFiles() throws {
        let folder = temporaryFolder("elle-tensorboard")
        XCTAssertFalse(EventFileWriter.hasEventFiles(in: folder))
        var time = 1700000000.0
        let writer = try EventFileWriter(folder: folder) { time += 1; return time }
        try writer.scalars([("train/loss", 2.5)], step: 7)
        try writer.text("grew", tag: "notes", step: 7)
        try writer.sessionStart(step: 8)
        let records = try readRecords([UInt8](Data(contentsOf: URL(fileURLWithPath: writer.path))))
        XCTAssertEqual(records, [
            Event(wallTime: 1700000001, step: 0, content: .fileVersion(EventFileWriter.fileVersion)).encoded,
            Event(wallTime: 1700000002, step: 7, content: .scalars([("train/loss", 2.5)])).encoded,
            Event(wallTime: 1700000003, step: 7, content: .text(tag: "notes", text: "grew")).encoded,
            Event(wallTime: 1700000004, step: 8, content: .sessionStart).encoded,
        ])
        XCTAssertTrue((writer.path as NSString).lastPathComponent.hasPrefix("events.out.tfevents.1700000001."))
        XCTAssertTrue(EventFileWriter.hasEventFiles(in: folder))
        _ = try EventFileWriter(folder: folder, clock: { 1700000100 })
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains("tfevents") }.count, 2)
    }

    /// TFRecord payloads, checking both masked CRCs.
    func readRecords(_ bytes: [UInt8]) throws -> [[UInt8]] {
        struct Corrupt: Error {}
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        var out: [[UInt8]] = [], at = 0
        while at < bytes.count {
            guard at + 12 <= bytes.count else { throw Corrupt() }
            let lengthBytes = Array(bytes[at..<at + 8])
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(lengthBytes[$1]) << (8 * $1) })
            guard CRC32C.masked(lengthBytes) == u32(at + 8), at + 16 + length <= bytes.count else { throw Corrupt() }
            let data = Array(bytes[at + 12..<at + 12 + length])
            guard CRC32C.masked(data) == u32(at + 12 + length) else { throw Corrupt() }
            out.append(data)
            at += 16 + length
        }
        return out
    }
}
