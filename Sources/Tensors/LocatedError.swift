/// An error that names where it is: a file's path or a field's name, and what is wrong there.
/// One type serves every module; `Kind` keeps the errors apart (`catch let e as CheckpointError`
/// catches only checkpoint errors) and words the message: `DataError`, `CheckpointError`,
/// `SafeTensorsError` and `InteropError` name a file, `ConfigError` and `GrowthPlanError` a field.
public struct LocatedError<Kind: ErrorKind>: Error, CustomStringConvertible {
    /// The file's path or the field's name.
    public let location: String
    public let message: String

    public var description: String { Kind.describe(location, message) }
}

/// Which errors a `LocatedError` is, and how it reads.
public protocol ErrorKind {
    static func describe(_ location: String, _ message: String) -> String
}

/// Errors about a file.
public protocol FileErrorKind: ErrorKind {}

/// Errors about a field of a value.
public protocol FieldErrorKind: ErrorKind {}

extension LocatedError where Kind: FileErrorKind {
    public init(path: String, _ message: String) {
        location = path
        self.message = message
    }
    public var path: String { location }
}

extension LocatedError where Kind: FieldErrorKind {
    public init(field: String, message: String) {
        location = field
        self.message = message
    }
    public var field: String { location }
}

extension LocatedError where Kind: FieldErrorKind {
    /// Throws `message` about `field` unless `ok`.
    public static func check(_ ok: Bool, _ field: String, _ message: String) throws {
        if !ok { throw LocatedError(field: field, message: message) }
    }

    /// Throws for the first field, in order, whose value is below 1: "must be at least 1 (got N)".
    public static func checkPositive(_ fields: KeyValuePairs<String, Int>) throws {
        for (field, value) in fields { try check(value >= 1, field, "must be at least 1 (got \(value))") }
    }
}
