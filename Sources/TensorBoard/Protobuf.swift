/// The few protocol-buffer encodings an event file needs, written by hand (no generated code):
/// fields in field-number order and proto3 defaults left out, as the reference serializer does,
/// so the bytes equal Python's `SerializeToString()` of the same message.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    private enum WireType: UInt64 { case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5 }

    private mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wire: WireType) { varint(UInt64(field) << 3 | wire.rawValue) }

    /// An int64 or enum field (negative values as ten-byte two's complement, as protobuf does).
    mutating func int(_ field: Int, _ value: Int64, keepDefault: Bool = false) {
        guard value != 0 || keepDefault else { return }
        key(field, .varint)
        varint(UInt64(bitPattern: value))
    }

    mutating func double(_ field: Int, _ value: Double) {
        guard value.bitPattern != 0 else { return }
        key(field, .fixed64)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    /// A float; `keepDefault` for a member of a oneof, which is written even when 0.
    mutating func float(_ field: Int, _ value: Float, keepDefault: Bool = false) {
        guard value.bitPattern != 0 || keepDefault else { return }
        key(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    mutating func data(_ field: Int, _ value: [UInt8], keepEmpty: Bool = false) {
        guard !value.isEmpty || keepEmpty else { return }
        key(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes += value
    }

    mutating func string(_ field: Int, _ value: String) { data(field, Array(value.utf8)) }

    /// A sub-message that is set (written even when empty, as a set message field is).
    mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        data(field, inner.bytes, keepEmpty: true)
    }
}
