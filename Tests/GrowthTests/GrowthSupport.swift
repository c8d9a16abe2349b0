import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training

/// Logits (B*T, V) of `model` on `tokens`, copied out.
func logits(_ model: GPT, _ tokens: [Int32], batch b: Int, seq t: Int) -> [Float] {
    tokens.withUnsafeBufferPointer { _ = model.forward(tokens: $0.baseAddress!, targets: nil, batch: b, seq: t) }
    return Array(UnsafeBufferPointer(start: model.logits, count: b * t * model.config.vocab))
}

/// max |a - b| / max |b| ("relative" in TESTING.md).
func relative(_ a: [Float], _ b: [Float]) -> Double {
    a.withUnsafeBufferPointer { maxRelativeError($0.baseAddress!, b) }
}

/// Mean over rows of KL(softmax(p) || softmax(q)), rows of `vocab` logits, in Float64.
func meanKL(_ p: [Float], _ q: [Float], vocab v: Int) -> Double {
    let rows = p.count / v
    var total = 0.0
    for r in 0..<rows {
        func logSoftmax(_ x: [Float]) -> [Double] {
            let row = x[(r * v)..<((r + 1) * v)].map(Double.init)
            let top = row.max()!
            let lse = top + log(row.map { exp($0 - top) }.reduce(0, +))
            return row.map { $0 - lse }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        for k in 0..<v { total += exp(lp[k]) * (lp[k] - lq[k]) }
    }
    return total / Double(rows)
}

/// The values of tensor `name` of `model`.
func values(_ model: GPT, _ name: String) -> [Float] {
    let spec = model.layout.tensor(named: name)!
    return Array(UnsafeBufferPointer(start: model.parameters.pointer + spec.offset, count: spec.count))
}

func grownModel(_ result: GrowthResult) throws -> GPT {
    try GPT(config: result.config, parameters: result.parameters)
}

/// A post-LN BERT: 2 layers, width 16, 2 heads of 8, FFN 64, vocab 32, sequence 8, pad token 1;
/// weights large enough that every path matters, norm gains around 1.
func smallBERT(normalization: Normalization = .layerNorm, seed: UInt64 = 11) throws -> BERT {
    var config = ModelConfig(architecture: .bert, layers: 2, width: 16, heads: 2, vocab: 32, context: 8, dropout: 0)
    config.padToken = 1
    config.normalization = normalization
    let model = try BERT(config: config, seed: seed)
    fillUniform(model.parameters.pointer, model.parameterCount, scale: 0.3, seed: seed + 1)
    for spec in model.layout.tensors where spec.name.hasSuffix("ln.weight") || spec.name.hasSuffix("ln1.weight") || spec.name.hasSuffix("ln2.weight") {
        for i in spec.range { model.parameters[i] += 1 }
    }
    return model
}

/// Three sequences of 8 tokens for `smallBERT`; the last ends in two pads.
let smallBERTTokens: [Int32] = {
    var t = randomTokens(3 * 8, vocab: 32, seed: 4).map { $0 == 1 ? 2 : $0 }
    t[22] = 1; t[23] = 1
    return t
}()

/// A small GPT trained for 300 updates on the bundled literature (about a second), shared by the
/// tests that need a model whose function is not random.
enum TrainedTiny {
    static let config = ModelConfig(layers: 2, width: 32, heads: 2, vocab: 257, context: 32, dropout: 0)
    static let corpus = try! TextCorpus(path: sampleDataPath(), tokenizer: ByteTokenizer())

    static func options(steps: Int, lr: Float) -> TrainingOptions {
        var options = TrainingOptions(batch: 8, seq: 32, steps: steps,
                                      schedule: LearningRateSchedule(kind: .cosine, peak: lr, warmup: min(20, steps), total: steps, minimum: lr / 10),
                                      dataPath: sampleDataPath())
        options.seed = 5
        options.adam.weightDecay = 0
        return options
    }

    /// (parameters, final training loss), computed once per process.
    static let trained: (parameters: FloatBuffer, loss: Float) = {
        Parallel.configure(threads: 2)
        let model = try! GPT(config: config, seed: 3)
        let trainer = try! Trainer(model: model, options: options(steps: 300, lr: 3e-3),
                                   train: corpus.train, valid: corpus.valid)
        var loss: Float = 0
        for _ in 0..<300 { loss = try! trainer.trainStep().loss }
        return (model.parameters, loss)
    }()

    /// A fresh copy of the trained parameters.
    static func parameters() -> FloatBuffer {
        let copy = FloatBuffer(count: trained.parameters.count)
        copy.copy(from: trained.parameters)
        return copy
    }

    /// B validation windows of T tokens (inputs) and their next tokens (targets).
    static func validationBatch(batch b: Int, seq t: Int) -> (tokens: [Int32], targets: [Int32]) {
        let valid = corpus.valid
        precondition(valid.count > b * t + 1)
        let tokens = (0..<(b * t)).map { valid[$0] }
        let targets = (0..<(b * t)).map { valid[$0 + 1] }
        return (tokens, targets)
    }
}
