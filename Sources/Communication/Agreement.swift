import Foundation
import Tensors

/// Checks that ranks hold the same things. Each is a collective: every rank calls it, and every
/// rank either returns or throws the same `JobError`, which names the ranks that differ.
extension Communicator {
    /// Compares named values (configuration fields, data statistics) with rank 0's. The error
    /// names each differing rank (up to 8) and its first differing field with both values.
    public func verifySameFields(_ fields: [(name: String, value: String)], what: String) throws {
        guard size > 1 else { return }
        let text = fields.map { "\($0.name)=\($0.value.replacingOccurrences(of: "\n", with: "\\n"))" }.joined(separator: "\n")
        let all = try gather(text, label: "\(what) comparison")
        var verdict = ""
        if isRoot {
            let reference = Self.parseFields(all[0])
            var differences: [String] = []
            for r in 1..<size {
                let other = Self.parseFields(all[r])
                guard let field = Self.firstDifference(reference, other) else { continue }
                differences.append("rank \(r) has \(field.name) = \(field.other ?? "(missing)") where rank 0 has \(field.name) = \(field.reference ?? "(missing)")")
            }
            if !differences.isEmpty {
                let shown = differences.prefix(8).joined(separator: "; ")
                let more = differences.count > 8 ? "; and \(differences.count - 8) more rank(s)" : ""
                verdict = "the ranks disagree on the \(what): \(shown)\(more)"
            }
        }
        verdict = try broadcast(verdict, label: "\(what) comparison (verdict)")
        if !verdict.isEmpty { throw JobError(verdict) }
    }

    /// XXH64 of `bytes` on every rank, compared with rank 0's. Returns the hash (equal on all
    /// ranks) or throws naming the ranks whose copy differs.
    @discardableResult
    public func verifyIdentical(_ bytes: UnsafeRawBufferPointer, what: String) throws -> UInt64 {
        try verifyIdentical(hash: XXH64.hash(bytes), what: what)
    }

    /// Compares a hash each rank computed of its own copy (e.g. XXH64 over several buffers) with
    /// rank 0's. Returns it, or throws naming the ranks whose hash differs.
    @discardableResult
    public func verifyIdentical(hash: UInt64, what: String) throws -> UInt64 {
        let hashes = try allGather(hash, label: "\(what) hash comparison")
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        if !differing.isEmpty {
            let shown = differing.prefix(8).map { String(format: "rank %d has %016llx", $0, hashes[$0]) }.joined(separator: ", ")
            let more = differing.count > 8 ? " and \(differing.count - 8) more" : ""
            throw JobError("the \(what) differ across ranks: \(shown)\(more), rank 0 has "
                           + String(format: "%016llx", hashes[0]) + " (XXH64)")
        }
        return hash
    }

    static func parseFields(_ text: String) -> [(name: String, value: String)] {
        text.split(separator: "\n", omittingEmptySubsequences: true).map { line in
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
    }

    /// The first field (in the reference's order, then the other's extras) whose value differs.
    static func firstDifference(_ reference: [(name: String, value: String)], _ other: [(name: String, value: String)])
        -> (name: String, reference: String?, other: String?)? {
        let otherByName = Dictionary(other.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        for (name, value) in reference where otherByName[name] != value {
            return (name, value, otherByName[name])
        }
        let referenceNames = Set(reference.map(\.name))
        if let extra = other.first(where: { !referenceNames.contains($0.name) }) {
            return (extra.name, nil, extra.value)
        }
        return nil
    }
}

/// A Codable value as flat `path = JSON value` fields ("schedule.peak" = "0.001"), in key order,
/// for `verifySameFields`.
public func flatFields<T: Encodable>(_ value: T, prefix: String) throws -> [(name: String, value: String)] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let object = try JSONSerialization.jsonObject(with: encoder.encode(value), options: [.fragmentsAllowed])
    var fields: [(String, String)] = []
    func visit(_ node: Any, _ path: String) {
        if let dictionary = node as? [String: Any] {
            for key in dictionary.keys.sorted() { visit(dictionary[key]!, path.isEmpty ? key : "\(path).\(key)") }
        } else if let array = node as? [Any] {
            for (i, element) in array.enumerated() { visit(element, "\(path)[\(i)]") }
        } else {
            let data = try? JSONSerialization.data(withJSONObject: node, options: [.fragmentsAllowed])
            fields.append((path, data.map { String(decoding: $0, as: UTF8.self) } ?? "\(node)"))
        }
    }
    visit(object, prefix)
    return fields
}
