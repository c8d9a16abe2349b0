import Communication
import Foundation
import Model
import Tensors

extension Checkpoint {
    /// The newest valid checkpoint in `folder` (`newestValid`), read by rank 0 alone:
    /// the other ranks receive its header (config, state, tensor sizes) and zero-filled tensors,
    /// which `Trainer` then overwrites with rank 0's by broadcast. So resuming needs no shared
    /// file system. If rank 0 cannot read it, every rank throws the same `JobError`.
    /// Returns the checkpoint and its path (as rank 0 sees it).
    public static func readLatestOnRoot(in folder: String, communicator: Communicator) throws -> (checkpoint: Checkpoint, path: String) {
        try readOnRoot(folder, communicator: communicator)
    }

    /// The newest checkpoint of a run folder that reads and verifies: the one `latest` names,
    /// else (when that is missing, truncated or corrupt) the other `.ckpt` files from the most
    /// recently written down. Each one skipped is reported through `warn` with the reason.
    public static func newestValid(in folder: String,
                                   warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> (Checkpoint, String) {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: folder) else {
            throw CheckpointError(path: folder, "is not a readable folder")
        }
        let files = names.filter { $0.hasSuffix(".ckpt") }.map { (folder as NSString).appendingPathComponent($0) }
        func modified(_ path: String) -> Date {
            ((try? manager.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantPast
        }
        var candidates = files.sorted { modified($0) > modified($1) }
        if let latest = Trainer.latestCheckpoint(in: folder) {
            candidates.removeAll { $0 == latest }
            candidates.insert(latest, at: 0)
        }
        guard !candidates.isEmpty else { throw CheckpointError(path: folder, "holds no checkpoint to resume (no latest, no .ckpt file)") }
        for path in candidates {
            do {
                return (try Checkpoint.read(from: path), path)
            } catch {
                warn("skipping \(error)")
            }
        }
        throw CheckpointError(path: folder, "holds no valid checkpoint: all \(candidates.count) failed verification (see above)")
    }

    /// As `readLatestOnRoot`, for a checkpoint file or a run folder (its newest valid checkpoint).
    public static func readOnRoot(_ location: String, communicator: Communicator) throws -> (checkpoint: Checkpoint, path: String) {
        let folder = location
        struct Shared: Codable {
            var path: String
            var error: String?
            var config: ModelConfig?
            var state: TrainingState?
            var tensors: [TensorEntry] = []
        }
        var loaded: Checkpoint?
        var text = ""
        if communicator.isRoot {
            var shared = Shared(path: folder)
            var isDirectory: ObjCBool = false
            let isFile = FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) && !isDirectory.boolValue
            do {
                let (checkpoint, path) = isFile ? (try Checkpoint.read(from: folder), folder) : try newestValid(in: folder)
                loaded = checkpoint
                shared.path = path
                shared.config = checkpoint.config
                shared.state = checkpoint.state
                shared.tensors = checkpoint.tensors.map { TensorEntry(name: $0.name, count: $0.buffer.count, offset: 0) }
            } catch {
                shared.error = "\(error)"
            }
            text = String(decoding: try JSONEncoder().encode(shared), as: UTF8.self)
        }
        text = try communicator.broadcast(text, label: "checkpoint header broadcast from rank 0")
        let shared = try JSONDecoder().decode(Shared.self, from: Data(text.utf8))
        if let error = shared.error { throw JobError(communicator.size > 1 ? "rank 0: \(error)" : error) }
        if let loaded { return (loaded, shared.path) }
        let checkpoint = Checkpoint(config: shared.config!, state: shared.state!,
                                    tensors: shared.tensors.map { ($0.name, FloatBuffer(count: $0.count)) })
        return (checkpoint, shared.path)
    }
}
