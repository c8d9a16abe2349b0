import Foundation
import Model
import Tensors

/// Shared pieces of elle's tests: the tiny config of ../shared/spec/TESTING.md, seeded random
/// fills, finite differences and the comparison rules.
public enum Tiny {
    /// 2 layers, width 16, 2 heads, vocab 32, sequence 8.
    public static func config(dropout: Float = 0) -> ModelConfig {
        ModelConfig(layers: 2, width: 16, heads: 2, vocab: 32, context: 8, dropout: dropout)
    }
}

/// Fills a pointer with uniform values in [-scale, scale) from a seeded generator.
public func fillUniform(_ p: UnsafeMutablePointer<Float>, _ count: Int, scale: Float = 1, seed: UInt64) {
    var rng = Xoshiro256(seed: seed)
    for i in 0..<count { p[i] = (2 * rng.nextFloat() - 1) * scale }
}

public func randomTokens(_ count: Int, vocab: Int, seed: UInt64) -> [Int32] {
    var rng = Xoshiro256(seed: seed)
    return (0..<count).map { _ in Int32(rng.nextInt(below: vocab)) }
}

/// One coordinate where a finite difference and an analytic gradient disagree.
public struct GradientMismatch: CustomStringConvertible {
    public var tensor: String
    public var index: Int
    public var numeric: Double
    public var analytic: Double
    public var description: String { "\(tensor)[\(index)]: finite difference \(numeric), analytic \(analytic)" }
}

public enum FiniteDifference {
    /// TESTING.md: central difference with h = 1e-3; pass when
    /// |fd - analytic| <= 2e-2 * max(|fd|, |analytic|) + 1e-4.
    public static let step: Float = 1e-3

    public static func agrees(_ numeric: Double, _ analytic: Double) -> Bool {
        abs(numeric - analytic) <= 2e-2 * max(abs(numeric), abs(analytic)) + 1e-4
    }

    /// Checks `samples` random coordinates of `values[0..<count]` (or all, if fewer): perturbs
    /// each by +-h, re-evaluates `loss` (Float64) and compares with `analytic[i]`.
    public static func check(
        _ name: String, values: UnsafeMutablePointer<Float>, analytic: UnsafePointer<Float>, count: Int,
        samples: Int = 24, seed: UInt64, loss: () -> Double
    ) -> [GradientMismatch] {
        var rng = Xoshiro256(seed: seed)
        let indices = count <= samples ? Array(0..<count) : (0..<samples).map { _ in rng.nextInt(below: count) }
        var mismatches: [GradientMismatch] = []
        for i in indices {
            let saved = values[i]
            let up = saved + step, down = saved - step
            values[i] = up
            let plus = loss()
            values[i] = down
            let minus = loss()
            values[i] = saved
            // Divide by the step float32 actually took, not the nominal 2h.
            let numeric = (plus - minus) / (Double(up) - Double(down))
            if !agrees(numeric, Double(analytic[i])) {
                mismatches.append(GradientMismatch(tensor: name, index: i, numeric: numeric, analytic: Double(analytic[i])))
            }
        }
        return mismatches
    }
}

/// sum_i a[i] * b[i] in Float64.
public func dot64(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Double {
    var s = 0.0
    for i in 0..<count { s += Double(a[i]) * Double(b[i]) }
    return s
}

/// max |a - b| / max |b| ("relative" in TESTING.md).
public func maxRelativeError(_ a: UnsafePointer<Float>, _ b: [Float]) -> Double {
    var diff = 0.0, scale = 0.0
    for i in 0..<b.count {
        diff = max(diff, abs(Double(a[i]) - Double(b[i])))
        scale = max(scale, abs(Double(b[i])))
    }
    return scale > 0 ? diff / scale : diff
}

/// ||a - b|| / ||b||
public func normRelativeError(_ a: UnsafePointer<Float>, _ b: ArraySlice<Float>) -> Double {
    var diff = 0.0, norm = 0.0
    for (k, i) in b.indices.enumerated() {
        let d = Double(a[k]) - Double(b[i])
        diff += d * d
        norm += Double(b[i]) * Double(b[i])
    }
    return norm > 0 ? (diff / norm).squareRoot() : diff.squareRoot()
}

/// True when two buffers hold the same bits.
public func bitIdentical(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Bool {
    for i in 0..<count where a[i].bitPattern != b[i].bitPattern { return false }
    return true
}

/// A file under Tests/Fixtures (found from this source file's location, so every test target
/// shares one copy).
public func fixtureURL(_ name: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(name)
}

/// The bundled sample text (data/sample/<domain>) in this checkout.
public func sampleDataPath(_ domain: String = "literature") -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/sample/\(domain)").path
}

/// A fresh empty folder under the system temporary directory.
public func temporaryFolder(_ name: String = "elle-test") -> String {
    let path = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The `elle` executable built beside the test bundle (`swift test` builds every product).
public var elleExecutable: String {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("elle").path
}

/// Runs a program to completion; returns (exit status, standard output, standard error).
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Drain both pipes while the process runs so a chatty child cannot block on a full pipe.
    final class Collected: @unchecked Sendable { var data = Data() }
    let collected = Collected()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { collected.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: collected.data, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// `elle data prepare` of the bundled sample's `domains` (comma-separated) with a trained BPE of
/// `vocabulary` tokens into `folder`; throws with its standard error if it fails.
public func prepareSample(into folder: String, domains: String = "literature", vocabulary: Int = 600) throws {
    let sampleRoot = (sampleDataPath() as NSString).deletingLastPathComponent
    let result = try runProcess(elleExecutable, ["data", "prepare", "--raw", sampleRoot, "--out", folder,
                                                 "--tokenizer", "train:\(vocabulary)", "--domains", domains, "--threads", "2"])
    guard result.status == 0 else { throw NSError(domain: "elle data prepare", code: Int(result.status), userInfo: [NSLocalizedDescriptionKey: result.stderr]) }
}
