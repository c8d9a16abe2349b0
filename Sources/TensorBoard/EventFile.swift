import Foundation

/// One record of an event file: an `Event` protocol buffer (tensorboard/compat/proto/event.proto)
/// with the fields elle writes.
public struct Event: Equatable, Sendable {
    public enum Content: Equatable, Sendable {
        /// The first record of every file ("brain.Event:2": readers then honour `sessionStart`).
        case fileVersion(String)
        /// Scalars (`simple_value`) under their tags.
        case scalars([(tag: String, value: Float)])
        /// A text summary (the text plugin's string tensor).
        case text(tag: String, text: String)
        /// `SessionLog` START: the run restarted here; readers drop the points of this run at
        /// this step and later written before it.
        case sessionStart

        public static func == (a: Content, b: Content) -> Bool {
            switch (a, b) {
            case let (.fileVersion(x), .fileVersion(y)): return x == y
            case let (.scalars(x), .scalars(y)):
                return x.count == y.count && zip(x, y).allSatisfy { $0.tag == $1.tag && $0.value.bitPattern == $1.value.bitPattern }
            case let (.text(t1, x), .text(t2, y)): return t1 == t2 && x == y
            case (.sessionStart, .sessionStart): return true
            default: return false
            }
        }
    }

    public var wallTime: Double
    public var step: Int
    public var content: Content

    public init(wallTime: Double, step: Int, content: Content) {
        self.wallTime = wallTime
        self.step = step
        self.content = content
    }

    /// The serialized `Event` message.
    public var encoded: [UInt8] {
        var w = ProtoWriter()
        w.double(1, wallTime)
        w.int(2, Int64(step))
        switch content {
        case .fileVersion(let version):
            w.string(3, version)
        case .scalars(let values):
            w.message(5) { summary in
                for (tag, value) in values {
                    summary.message(1) { v in
                        v.string(1, tag)
                        v.float(2, value, keepDefault: true)  // simple_value is in a oneof
                    }
                }
            }
        case .text(let tag, let text):
            w.message(5) { summary in
                summary.message(1) { v in
                    v.string(1, tag)
                    v.message(8) { tensor in                  // TensorProto
                        tensor.int(1, 7)                      // dtype DT_STRING
                        tensor.message(2) { _ in }            // tensor_shape: a scalar
                        tensor.data(8, Array(text.utf8), keepEmpty: true)  // string_val
                    }
                    v.message(9) { metadata in                // SummaryMetadata
                        metadata.message(1) { plugin in plugin.string(1, "text") }
                    }
                }
            }
        case .sessionStart:
            w.message(7) { log in log.int(1, 1) }             // SessionLog status START
        }
        return w.bytes
    }
}

/// TFRecord framing: length (UInt64 LE), its masked CRC32C, the data, the data's masked CRC32C.
public enum TFRecord {
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
        return out
    }
}

/// A TensorBoard run folder's event file (`events.out.tfevents.<seconds>.<microseconds>.<host>.<pid>`),
/// created with its version record and appended to record by record; every record is flushed
/// to the file at once, so TensorBoard shows a running job's curves live. A resumed run writes a
/// new file in the same folder that starts with `sessionStart` (TensorBoard reads a folder's
/// files in name order, that is in time order).
public final class EventFileWriter {
    public static let fileVersion = "brain.Event:2"
    public let path: String
    private let handle: FileHandle
    private let clock: () -> Double

    /// Creates `folder` if needed and a new event file in it. `clock` gives each record's wall
    /// time (seconds since 1970).
    public init(folder: String, clock: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let now = clock()
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        // Readers take a folder's files in name order: seconds and microseconds first keep a
        // resumed run's file after the earlier ones.
        let seconds = now.rounded(.down)
        let name = "events.out.tfevents.\(Int(seconds)).\(String(format: "%06d", Int((now - seconds) * 1e6))).\(host).\(getpid())"
        path = (folder as NSString).appendingPathComponent(name)
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw TensorBoardError(path: path, "cannot be created")
        }
        self.handle = handle
        self.clock = clock
        try write(Event(wallTime: now, step: 0, content: .fileVersion(EventFileWriter.fileVersion)))
    }

    deinit { try? handle.close() }

    public func write(_ event: Event) throws {
        do { try handle.write(contentsOf: TFRecord.frame(event.encoded)) } catch {
            throw TensorBoardError(path: path, "cannot be written: \(error.localizedDescription)")
        }
    }

    /// Scalars at `step`, one record.
    public func scalars(_ values: [(tag: String, value: Float)], step: Int) throws {
        guard !values.isEmpty else { return }
        try write(Event(wallTime: clock(), step: step, content: .scalars(values)))
    }

    public func text(_ text: String, tag: String, step: Int) throws {
        try write(Event(wallTime: clock(), step: step, content: .text(tag: tag, text: text)))
    }

    /// Marks a restart: the run continues after update `step - 1`.
    public func sessionStart(step: Int) throws {
        try write(Event(wallTime: clock(), step: step, content: .sessionStart))
    }

    /// Whether `folder` already holds event files (of another run, or of this one before a resume).
    public static func hasEventFiles(in folder: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).contains { $0.contains("tfevents") }
    }
}

/// An event file that cannot be written, naming it.
public struct TensorBoardError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}
