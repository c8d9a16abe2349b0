import Foundation

/// Checks that raw input is text: binary data (NUL bytes) and invalid UTF-8 are errors naming
/// the file and the byte offset, never a crash or silently mangled tokens.
public enum TextCheck {
    public static func validate(_ bytes: UnsafeBufferPointer<UInt8>, path: String) throws {
        guard let p = bytes.baseAddress else { return }
        let n = bytes.count
        var i = 0
        while i < n {
            let b0 = p[i]
            if b0 < 0x80 {
                if b0 == 0 {
                    throw DataError(path: path, "looks like binary data, not text (NUL byte at offset \(i))")
                }
                i += 1
                continue
            }
            let length: Int
            var ok = true
            switch b0 {
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: length = 1; ok = false
            }
            if ok && i + length > n { ok = false }
            if ok {
                for k in 1..<length where p[i + k] & 0xC0 != 0x80 { ok = false }
            }
            if ok && length >= 3 {
                let b1 = p[i + 1]
                if (b0 == 0xE0 && b1 < 0xA0) || (b0 == 0xED && b1 >= 0xA0) || (b0 == 0xF0 && b1 < 0x90) || (b0 == 0xF4 && b1 >= 0x90) {
                    ok = false
                }
            }
            guard ok else {
                let hex = String(b0, radix: 16, uppercase: true)
                throw DataError(path: path, "is not valid UTF-8 (byte 0x\(hex) at offset \(i)); convert it to UTF-8 text first")
            }
            i += length
        }
    }
}

extension TextCheck {
    /// A text file as elle reads it: checked (`validate`), a UTF-8 byte-order mark at its start
    /// dropped, and Windows (CRLF) and old Mac (lone CR) line endings turned into LF, so text
    /// from any platform splits into pieces and tokenizes the same way. LF text is unchanged.
    public static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError(path: path, "cannot be read") }
        var bytes = [UInt8](data)
        try bytes.withUnsafeBufferPointer { try validate($0, path: path) }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard bytes.contains(0x0D) else { return bytes }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0D {
                out.append(0x0A)
                if i + 1 < bytes.count && bytes[i + 1] == 0x0A { i += 1 }
            } else {
                out.append(bytes[i])
            }
            i += 1
        }
        return out
    }
}
