import Communication
import Foundation
import Model
import Tensors

/// A run's folder: its checkpoints (`step-NNNNNNNN.ckpt`, a lifelong run's
/// `stage-NN-DOMAIN.ckpt`), the `latest` pointer naming the newest, and `metrics.jsonl`.
///
/// Every command finds a run's checkpoint the same way (`read`, `readOnRoot`): a file is itself;
/// a folder means its newest checkpoint that reads and verifies: the one `latest` names, else the
/// other `.ckpt` files from the most recently written down. A corrupt or truncated newest file is
/// skipped with a message naming it and the file used instead, so `train --resume`, `eval`,
/// `sample`, `grow` and `export` always agree on the checkpoint.
public struct RunFolder: Sendable {
    public let path: String

    public init(_ path: String) { self.path = path }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    public var metricsPath: String { file("metrics.jsonl") }

    public static func stepCheckpointName(_ step: Int) -> String { String(format: "step-%08d.ckpt", step) }

    public static func stageCheckpointName(stage: Int, domain: String) -> String {
        String(format: "stage-%02d-%@.ckpt", stage, domain)
    }

    /// The checkpoint `latest` names, or nil when there is none.
    public var latest: String? {
        guard let text = try? String(contentsOfFile: file("latest"), encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : file(name)
    }

    /// Atomically writes `checkpoint` as `name`, points `latest` at it, then removes the oldest
    /// step checkpoints beyond the newest `keepSteps` (nil: keep all; stage checkpoints are always
    /// kept). Returns the file's path.
    @discardableResult
    public func write(_ checkpoint: Checkpoint, name: String, keepSteps: Int? = nil) throws -> String {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let target = file(name)
        try checkpoint.write(to: target)
        try writeFileAtomically(name + "\n", to: file("latest"))
        if let keepSteps {
            let steps = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
                .filter { $0.hasPrefix("step-") && $0.hasSuffix(".ckpt") }.sorted()
            let all = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            for old in steps.dropLast(keepSteps) {
                // With the checkpoint go its ZeRO moment shards (`Trainer.momentShardPath`).
                for name in all where name == old || name.hasPrefix(old + ".adam-") { try? FileManager.default.removeItem(atPath: file(name)) }
            }
        }
        return target
    }

    /// The newest checkpoint of the folder that reads and verifies (the rule above). Each one
    /// skipped is reported through `warn` with the reason.
    public func newestValid(warn: (String) -> Void = RunFolder.standardError) throws -> (checkpoint: Checkpoint, path: String) {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: path) else {
            throw CheckpointError(path: path, "is not a readable folder")
        }
        func modified(_ file: String) -> Date {
            ((try? manager.attributesOfItem(atPath: file))?[.modificationDate] as? Date) ?? .distantPast
        }
        var candidates = names.filter { $0.hasSuffix(".ckpt") }.map(file).sorted { modified($0) > modified($1) }
        if let latest {
            candidates.removeAll { $0 == latest }
            candidates.insert(latest, at: 0)
        }
        guard !candidates.isEmpty else { throw CheckpointError(path: path, "holds no checkpoint (no latest, no .ckpt file)") }
        for candidate in candidates {
            do {
                return (try Checkpoint.read(from: candidate), candidate)
            } catch {
                warn("skipping \(error)")
            }
        }
        throw CheckpointError(path: path, "holds no valid checkpoint: all \(candidates.count) failed verification (see above)")
    }

    /// A checkpoint file, or a run folder's newest valid checkpoint: the one rule every command
    /// uses. When it had to skip a file, it also says which one it used.
    public static func read(_ location: String, warn: (String) -> Void = RunFolder.standardError) throws -> (checkpoint: Checkpoint, path: String) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: location, isDirectory: &isDirectory) else {
            throw CheckpointError(path: location, "does not exist")
        }
        guard isDirectory.boolValue else { return (try Checkpoint.read(from: location), location) }
        var skipped = false
        let found = try RunFolder(location).newestValid { skipped = true; warn($0) }
        if skipped { warn("using \(found.path)") }
        return found
    }

    /// `read` by rank 0 alone: the other ranks receive the header (config, state, tensor sizes)
    /// and zero-filled tensors, which `Trainer` then overwrites with rank 0's by broadcast, so
    /// resuming needs no shared file system. If rank 0 cannot read it, every rank throws the same
    /// `JobError`. Returns the checkpoint and its path as rank 0 sees it. Collective.
    public static func readOnRoot(_ location: String, communicator: Communicator) throws -> (checkpoint: Checkpoint, path: String) {
        struct Shared: Codable {
            var path: String
            var error: String?
            var config: ModelConfig?
            var state: TrainingState?
            var tensors: [Checkpoint.TensorEntry] = []
        }
        var loaded: Checkpoint?
        var text = ""
        if communicator.isRoot {
            var shared = Shared(path: location)
            do {
                let (checkpoint, path) = try read(location)
                loaded = checkpoint
                shared.path = path
                shared.config = checkpoint.config
                shared.state = checkpoint.state
                shared.tensors = checkpoint.tensors.map { Checkpoint.TensorEntry(name: $0.name, count: $0.buffer.count, offset: 0) }
            } catch {
                shared.error = "\(error)"
            }
            text = String(decoding: try JSONEncoder().encode(shared), as: UTF8.self)
        }
        text = try communicator.broadcast(text, label: "checkpoint header broadcast from rank 0")
        let shared = try JSONDecoder().decode(Shared.self, from: Data(text.utf8))
        if let error = shared.error { throw JobError(communicator.size > 1 ? "rank 0: \(error)" : error) }
        if let loaded { return (loaded, shared.path) }
        guard let config = shared.config, let state = shared.state else {
            throw JobError("rank 0 sent a checkpoint header without a config or state (\(shared.path))")
        }
        return (Checkpoint(config: config, state: state, tensors: shared.tensors.map { ($0.name, FloatBuffer(count: $0.count)) }), shared.path)
    }

    /// Writes a line to standard error (the default for skipped-checkpoint messages).
    public static func standardError(_ line: String) {
        FileHandle.standardError.write(Data(("elle: " + line + "\n").utf8))
    }
}

extension Checkpoint {
    /// The model the checkpoint holds (its "parameters" tensor with its config).
    public func model(path: String) throws -> LanguageModel {
        guard let parameters = tensor("parameters") else { throw CheckpointError(path: path, "holds no parameters tensor") }
        return try makeModel(config: config, parameters: parameters)
    }

    /// Adam's moments, when the checkpoint holds them (checked to match the parameters).
    public func moments(path: String) throws -> (m: FloatBuffer, v: FloatBuffer)? {
        guard let m = tensor("adam.m"), let v = tensor("adam.v") else { return nil }
        guard let parameters = tensor("parameters"), m.count == parameters.count, v.count == parameters.count else {
            throw CheckpointError(path: path, "has Adam moments of a different size than its parameters")
        }
        return (m, v)
    }
}

/// Writes checkpoints on a background thread, one at a time, so training pauses only for a copy
/// of the state into buffers kept for the purpose (allocated by the first checkpoint and reused:
/// their pages are already mapped, so the copy runs at memory speed), not for the file system. A
/// failed write is reported by the next `write` or by `finish`; `finish` waits for the last file
/// (call it before anything reads the folder, and before the process exits).
public final class CheckpointWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "elle.checkpoint-writer")
    private let lock = NSLock()
    private var failure: Error?
    /// The copy of the state the writer thread is writing, or will write.
    private var copies: [FloatBuffer] = []

    public init() {}

    /// Copies `checkpoint`'s tensors and queues them to be written as `name` in `folder` (the
    /// previous write is finished first, since its copy is reused). Returns the file's path.
    @discardableResult
    public func write(_ checkpoint: Checkpoint, to folder: RunFolder, name: String, keepSteps: Int? = nil) throws -> String {
        try finish()
        if copies.map(\.count) != checkpoint.tensors.map(\.buffer.count) {
            copies = checkpoint.tensors.map { FloatBuffer(count: $0.buffer.count, zeroed: false) }
        }
        for (copy, tensor) in zip(copies, checkpoint.tensors) { copy.copy(from: tensor.buffer) }
        let snapshot = Checkpoint(config: checkpoint.config, state: checkpoint.state,
                                  tensors: zip(checkpoint.tensors, copies).map { ($0.0.name, $0.1) })
        queue.async { [self] in
            do { _ = try folder.write(snapshot, name: name, keepSteps: keepSteps) } catch {
                lock.lock(); failure = failure ?? error; lock.unlock()
            }
        }
        return folder.file(name)
    }

    /// True once a queued write has failed (without waiting; `finish` then throws its error).
    public var hasFailed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return failure != nil
    }

    /// Waits for the queued write; throws if it failed.
    public func finish() throws {
        queue.sync {}
        lock.lock()
        defer { lock.unlock() }
        if let failure { self.failure = nil; throw failure }
    }
}
