import Data
import Distributed
import Foundation
import Model
import Tensors

/// What one update did.
public struct StepResult: Sendable {
    public var step: Int
    public var loss: Float
    public var learningRate: Float
    public var gradientNorm: Float
    public var tokens: Int
    public var seconds: Double
}

/// Plain single-domain training: micro-batches from a `SequenceLoader`, gradient accumulation,
/// clipping, AdamW, periodic validation and checkpoints.
///
/// Each micro-batch's gradient is computed on its own and then added to the update's sum (the
/// order MPI will later reproduce across ranks), and the sum is scaled once by
/// 1 / (micro-batches * ranks): so 1 rank x 2 micro-batches and 2 ranks x 1 give the same bits.
public final class Trainer {
    public let model: GPT
    public let optimizer: AdamW
    public let options: TrainingOptions
    public let communicator: Communicator
    public private(set) var step: Int
    public private(set) var tokensSeen: Int
    let loader: SequenceLoader
    let validTokens: TokenStream
    private let inputs: Buffer<Int32>
    private let targets: Buffer<Int32>
    /// Sum of micro-batch gradients when accumulating (nil with one micro-batch per update).
    private let gradientSum: FloatBuffer?

    /// A fresh run on tokens in memory.
    public convenience init(model: GPT, options: TrainingOptions, train: Buffer<Int32>, valid: Buffer<Int32>,
                            communicator: Communicator = SingleProcess()) throws {
        try self.init(model: model, options: options, train: TokenStream(train), valid: TokenStream(valid),
                      communicator: communicator, state: nil, moments: nil)
    }

    /// A fresh run on a token stream (e.g. memory-mapped shards).
    public convenience init(model: GPT, options: TrainingOptions, train: TokenStream, valid: TokenStream,
                            communicator: Communicator = SingleProcess()) throws {
        try self.init(model: model, options: options, train: train, valid: valid,
                      communicator: communicator, state: nil, moments: nil)
    }

    /// A run continued from a checkpoint's tensors and state.
    public init(model: GPT, options: TrainingOptions, train: TokenStream, valid: TokenStream,
                communicator: Communicator, state: TrainingState?, moments: (m: FloatBuffer, v: FloatBuffer)?) throws {
        try options.validate(model: model.config)
        self.model = model
        self.options = options
        self.communicator = communicator
        optimizer = AdamW(tensors: model.layout.tensors, count: model.parameterCount, settings: options.adam)
        if let moments {
            optimizer.m.copy(from: moments.m)
            optimizer.v.copy(from: moments.v)
        }
        if let state {
            guard state.worldSize == communicator.size else {
                throw CheckpointError(path: "resume",
                    "was written by \(state.worldSize) rank(s) but this job has \(communicator.size); resume with the same number of ranks")
            }
            step = state.step
            tokensSeen = state.tokensSeen
            optimizer.step = state.optimizerStep
        } else {
            step = 0
            tokensSeen = 0
        }
        loader = try SequenceLoader(stream: train, seq: options.seq, seed: options.seed,
                                    rank: communicator.rank, worldSize: communicator.size,
                                    position: state?.loader ?? LoaderPosition())
        validTokens = valid
        inputs = Buffer(count: options.batch * options.seq)
        targets = Buffer(count: options.batch * options.seq)
        gradientSum = options.accumulation > 1 ? FloatBuffer(count: model.parameterCount) : nil
    }

    /// Runs one update: accumulation micro-batches, gradient average, clipping, AdamW.
    public func trainStep() -> StepResult {
        let start = DispatchTime.now().uptimeNanoseconds
        let b = options.batch, t = options.seq, accumulation = options.accumulation
        var lossSum = 0.0
        for micro in 0..<accumulation {
            loader.next(batch: b, inputs: inputs.pointer, targets: targets.pointer)
            let globalMicro = communicator.rank * accumulation + micro
            let dropoutSeed = SplitMix64.mix(options.seed, 0xD50_0000, UInt64(step), UInt64(globalMicro))
            model.zeroGradients()
            lossSum += Double(model.forward(tokens: inputs.pointer, targets: targets.pointer,
                                            batch: b, seq: t, dropoutSeed: dropoutSeed))
            model.backward()
            if let gradientSum {
                if micro == 0 {
                    gradientSum.copy(from: model.gradients)
                } else {
                    addInPlace(gradientSum.pointer, model.gradients.pointer, count: gradientSum.count)
                }
            }
        }
        let gradients = gradientSum ?? model.gradients
        let contributions = accumulation * communicator.size
        if contributions > 1 {
            scaleInPlace(gradients.pointer, 1 / Float(contributions), count: gradients.count)
        }
        let norm = clipGradients(gradients, maxNorm: options.clip)
        let lr = options.schedule(step)
        optimizer.update(parameters: model.parameters, gradients: gradients, learningRate: lr)
        step += 1
        let tokens = b * t * contributions
        tokensSeen += tokens
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return StepResult(step: step, loss: Float(lossSum / Double(accumulation)), learningRate: lr,
                          gradientNorm: norm, tokens: tokens, seconds: seconds)
    }

    /// Mean loss over up to `options.evalBatches` batches of the validation tokens, read in
    /// order (no dropout). Returns nil when the validation split is shorter than one sequence.
    public func evaluate() -> Float? {
        let b = options.batch, t = options.seq
        let windows = validTokens.windowCount(seq: t)
        if windows == 0 { return nil }
        var total = 0.0, batches = 0
        var window = 0
        while window < windows && batches < options.evalBatches {
            let rows = min(b, windows - window)
            for r in 0..<rows {
                validTokens.copyWindow(window + r, seq: t, inputs: inputs.pointer + r * t, targets: targets.pointer + r * t)
            }
            total += Double(model.forward(tokens: inputs.pointer, targets: targets.pointer, batch: rows, seq: t))
            batches += 1
            window += rows
        }
        return Float(total / Double(batches))
    }

    public var state: TrainingState {
        TrainingState(step: step, options: options, loader: loader.position, optimizerStep: optimizer.step,
                      tokensSeen: tokensSeen, worldSize: communicator.size)
    }

    public func checkpoint() -> Checkpoint {
        Checkpoint(config: model.config, state: state,
                   tensors: [("parameters", model.parameters), ("adam.m", optimizer.m), ("adam.v", optimizer.v)])
    }

    /// Writes `step-NNNNNNNN.ckpt` in `folder` and points `folder/latest` at it. Returns its path.
    @discardableResult
    public func saveCheckpoint(in folder: String) throws -> String {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let name = String(format: "step-%08d.ckpt", step)
        let path = (folder as NSString).appendingPathComponent(name)
        try checkpoint().write(to: path)
        try writeFileAtomically(name + "\n", to: (folder as NSString).appendingPathComponent("latest"))
        return path
    }

    /// The checkpoint `folder/latest` names, or nil when there is none.
    public static func latestCheckpoint(in folder: String) -> String? {
        let pointer = (folder as NSString).appendingPathComponent("latest")
        guard let text = try? String(contentsOfFile: pointer, encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : (folder as NSString).appendingPathComponent(name)
    }

    /// Rebuilds a trainer from a checkpoint file: model, moments, step and data position.
    public static func resume(from path: String, train: Buffer<Int32>, valid: Buffer<Int32>,
                              communicator: Communicator = SingleProcess(),
                              options override: TrainingOptions? = nil) throws -> Trainer {
        try resume(from: path, train: TokenStream(train), valid: TokenStream(valid), communicator: communicator, options: override)
    }

    public static func resume(from path: String, train: TokenStream, valid: TokenStream,
                              communicator: Communicator = SingleProcess(),
                              options override: TrainingOptions? = nil) throws -> Trainer {
        let checkpoint = try Checkpoint.read(from: path)
        guard let parameters = checkpoint.tensor("parameters") else {
            throw CheckpointError(path: path, "holds no parameters tensor")
        }
        let model = try GPT(config: checkpoint.config, parameters: parameters)
        var moments: (FloatBuffer, FloatBuffer)?
        if let m = checkpoint.tensor("adam.m"), let v = checkpoint.tensor("adam.v") {
            guard m.count == parameters.count, v.count == parameters.count else {
                throw CheckpointError(path: path, "has Adam moments of a different size than its parameters")
            }
            moments = (m, v)
        }
        return try Trainer(model: model, options: override ?? checkpoint.state.options, train: train,
                           valid: valid, communicator: communicator, state: checkpoint.state,
                           moments: moments)
    }
}
