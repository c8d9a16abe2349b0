/// Decoding helpers for files people write by hand (stage plans): an unknown key is almost
/// always a typo, and ignoring it would silently run with a default.

/// A coding key for any string, used to list the keys a container actually holds.
public struct AnyCodingKey: CodingKey {
    public var stringValue: String
    public var intValue: Int?
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

extension Decoder {
    /// Throws a `DecodingError.dataCorrupted` naming the first key of this object that is not
    /// one of `Keys`, and the keys that are allowed.
    public func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) throws {
        try rejectUnknownKeys(allowed: Keys.allCases.map(\.stringValue))
    }

    /// The same for a list of allowed key names (objects whose keys come from several tables).
    public func rejectUnknownKeys(allowed names: [String]) throws {
        let allowed = Set(names)
        let container = try self.container(keyedBy: AnyCodingKey.self)
        for key in container.allKeys where !allowed.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: codingPath + [key],
                debugDescription: "unknown field; expected one of \(allowed.sorted().joined(separator: ", "))"))
        }
    }
}

/// "stages[1].grow.width" for a decoding path.
public func describeCodingPath(_ path: [CodingKey]) -> String {
    var text = ""
    for key in path {
        if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
    }
    return text.isEmpty ? "(top level)" : text
}
