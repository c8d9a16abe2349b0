import Distributed
import Foundation
import Model
import Tensors

extension Checkpoint {
    /// The newest checkpoint in `folder` (the one `folder/latest` names), read by rank 0 alone:
    /// the other ranks receive its header (config, state, tensor sizes) and zero-filled tensors,
    /// which `Trainer` then overwrites with rank 0's by broadcast. So resuming needs no shared
    /// file system. If rank 0 cannot read it, every rank throws the same `JobError`.
    /// Returns the checkpoint and its path (as rank 0 sees it).
    public static func readLatestOnRoot(in folder: String, communicator: Communicator) throws -> (checkpoint: Checkpoint, path: String) {
        try readOnRoot(folder, communicator: communicator)
    }

    /// As `readLatestOnRoot`, for a checkpoint file or a run folder (its newest checkpoint).
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
            if let path = isFile ? folder : Trainer.latestCheckpoint(in: folder) {
                shared.path = path
                do {
                    let checkpoint = try Checkpoint.read(from: path)
                    loaded = checkpoint
                    shared.config = checkpoint.config
                    shared.state = checkpoint.state
                    shared.tensors = checkpoint.tensors.map { TensorEntry(name: $0.name, count: $0.buffer.count, offset: 0) }
                } catch {
                    shared.error = "\(error)"
                }
            } else {
                shared.error = "no checkpoint to resume in \(folder) (no \(folder)/latest)"
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
