import Communication
import Foundation
import Model
import Tensors

/// A trained model run forward only on the student's batches (knowledge inheritance). Its
/// parameters are never changed; dropout is off.
public final class Teacher {
    public let model: LanguageModel
    /// Where it came from (checkpoint path, or "previous").
    public let source: String
    /// XXH64 of its parameters.
    public let hash: UInt64
    private var ids = Buffer<Int32>(count: 0)
    private var values = FloatBuffer(count: 0)

    public init(model: LanguageModel, source: String) {
        self.model = model
        self.source = source
        hash = XXH64.hash(model.parameters.rawBytes)
    }

    public var hashString: String { String(format: "%016llx", hash) }

    /// Reads a teacher checkpoint (file or run folder: its newest valid checkpoint) on rank 0 and
    /// sends it to every rank, which checks the parameters' hash against rank 0's. Collective.
    public static func load(_ location: String, communicator: Communicator) throws -> Teacher {
        let (checkpoint, path) = try RunFolder.readOnRoot(location, communicator: communicator)
        guard let parameters = checkpoint.tensor("parameters") else {
            throw CheckpointError(path: path, "holds no parameters tensor (needed for the teacher)")
        }
        try communicator.broadcast(parameters, label: "teacher parameter broadcast from rank 0")
        var config = checkpoint.config
        config.dropout = 0
        let model = try makeModel(config: config, parameters: parameters)
        let teacher = Teacher(model: model, source: path)
        try communicator.verifyIdentical(model.parameters.rawBytes, what: "teacher parameters from \(path)")
        return teacher
    }

    /// Throws unless this teacher can teach `student` on sequences of `seq` tokens: same
    /// architecture (next-token or masked-token predictions), same vocabulary, context >= seq.
    public func check(student: ModelConfig, seq: Int) throws {
        let t = model.config
        guard t.architecture == student.architecture else {
            throw ConfigError(field: "distillation.teacher",
                              message: "\(source) is a \(t.architecture) but the student is a \(student.architecture): a teacher must predict the same targets")
        }
        guard t.vocab == student.vocab else {
            throw ConfigError(field: "distillation.teacher",
                              message: "\(source) has a vocabulary of \(t.vocab) but the student's is \(student.vocab): teacher and student must share the tokenizer")
        }
        guard t.context >= seq else {
            throw ConfigError(field: "distillation.teacher",
                              message: "\(source) has a context of \(t.context), shorter than the run's sequences of \(seq)")
        }
        if t.architecture == .bert && t.padToken != student.padToken {
            throw ConfigError(field: "distillation.teacher",
                              message: "\(source) pads with token \(t.padToken.map(String.init) ?? "none") but the student with \(student.padToken.map(String.init) ?? "none")")
        }
    }

    /// Forward FLOPs per token on sequences of `seq` tokens.
    public func forwardFLOPsPerToken(seq: Int) -> Double {
        FLOPCount.forwardPerToken(model.config, parameters: model.parameterCount, seq: seq)
    }

    /// Runs the teacher on a micro-batch (the student's exact inputs; for BERT the same masked
    /// sequences and targets, so its logit rows are the student's rows) and returns its rows:
    /// dense logits, or with `topK` its K largest logits per row.
    public func predict(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch: Int, seq: Int,
                        topK k: Int?) -> TeacherRows {
        // A GPT predicts every position; without targets it skips the cross-entropy.
        model.forward(tokens: tokens, targets: model.config.architecture == .bert ? targets : nil,
                      batch: batch, seq: seq, dropoutSeed: nil)
        let rows = model.config.architecture == .bert ? model.logitRowCount : batch * seq
        guard let k else { return .dense(UnsafePointer(model.logits)) }
        if ids.count < rows * k {
            ids = Buffer<Int32>(count: rows * k)
            values = FloatBuffer(count: rows * k)
        }
        Training.topK(model.logits, rows: rows, vocab: model.config.vocab, k: k, ids: ids.pointer, values: values.pointer)
        return .topK(ids: UnsafePointer(ids.pointer), logits: UnsafePointer(values.pointer), k: k)
    }
}
