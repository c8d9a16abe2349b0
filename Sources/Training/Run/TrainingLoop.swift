import Communication
import Foundation
import Tensors

/// How often a phase logs, validates and writes checkpoints, counted in the phase's updates.
public struct RunCadence: Sendable {
    /// A progress line and metrics record every N updates (and at the phase's last).
    public var logEvery: Int
    /// Validation every N updates (0: none inside the phase).
    public var evalEvery: Int
    /// A checkpoint every N updates (0: none by count; see `TrainingLoop.checkpointSeconds`).
    public var checkpointEvery: Int
    /// Whether the phase's last update is also validated / checkpointed (a plain run's is; a
    /// lifelong phase leaves that to the stage's end).
    public var evaluateAtEnd: Bool
    public var checkpointAtEnd: Bool

    public init(logEvery: Int, evalEvery: Int = 0, checkpointEvery: Int = 0, evaluateAtEnd: Bool = false, checkpointAtEnd: Bool = false) {
        self.logEvery = max(1, logEvery)
        self.evalEvery = evalEvery
        self.checkpointEvery = checkpointEvery
        self.evaluateAtEnd = evaluateAtEnd
        self.checkpointAtEnd = checkpointAtEnd
    }
}

/// The updates since the last progress line.
public struct RunWindow: Sendable {
    public var steps = 0, tokens = 0
    public var seconds = 0.0, lossSum = 0.0, crossEntropySum = 0.0
    /// Tokens per second and model FLOP utilization over the window (set by the loop).
    public var tokensPerSecond = 0.0, mfu = 0.0
    /// Seconds the phase's remaining updates take at this window's pace.
    public var secondsLeft = 0.0

    mutating func add(_ r: StepResult) {
        steps += 1; tokens += r.tokens; seconds += r.seconds
        lossSum += Double(r.loss); crossEntropySum += Double(r.crossEntropy)
    }

    public var meanLoss: Double { steps > 0 ? lossSum / Double(steps) : 0 }
    public var meanCrossEntropy: Double { steps > 0 ? crossEntropySum / Double(steps) : 0 }
    public var millisecondsPerStep: Double { steps > 0 ? 1000 * seconds / Double(steps) : 0 }
}

/// One phase of training that the `TrainingLoop` drives: a plain run, a lifelong stage's warmup or
/// training, a fine-tuning run. Methods marked collective are called by every rank at the same
/// point; `report` only matters on rank 0.
public protocol TrainingPhase: AnyObject {
    /// Updates in the phase and how many are done (more than 0 when resuming mid-phase).
    var updates: Int { get }
    var completed: Int { get }
    /// Updates of the whole run so far (what `--stop-after` counts).
    var runStep: Int { get }
    /// True when the phase ended before `updates` (early stopping).
    var finishedEarly: Bool { get }
    /// Before each update, e.g. a growth that is due. Collective.
    func prepareUpdate() throws
    /// One update. Collective.
    func update() throws -> StepResult
    /// After each update, e.g. refreshing adaptive replay weights. Collective.
    func finishUpdate(_ result: StepResult) throws
    /// When to report, validate and checkpoint.
    var cadence: RunCadence { get }
    /// Training FLOPs per token at the model's current size (for the reports' MFU).
    var flopsPerToken: Double { get }
    /// The progress line and metrics record of the window that ends at update `completed`
    /// (nil: the phase reports elsewhere, e.g. with its evaluation).
    func report(_ window: RunWindow, result: StepResult, last: Bool) -> (line: String, record: [String: Any])?
    /// Validation at a cadence point. Collective.
    func evaluate(last: Bool) throws
    /// Writes a checkpoint of the state after update `completed`. Collective.
    func checkpoint() throws
    /// Writes the last completed update's state without any collective (this rank's peers are
    /// gone); returns the file, or nil when the phase keeps no checkpoints.
    func emergencyCheckpoint() throws -> String?
    /// What to tell the user when the averaged loss is not finite (every rank sees the same loss).
    func nonFiniteLoss(_ result: StepResult) -> String
}

extension TrainingPhase {
    public var finishedEarly: Bool { false }
    public func prepareUpdate() throws {}
    public func finishUpdate(_ result: StepResult) throws {}
}

/// The one training loop: every kind of run drives it with its phases. Per update it agrees
/// with the other ranks whether to stop (a stop signal on any rank, `stopAfter`) or to write a
/// time-based checkpoint (rank 0's clock decides), runs the update, stops the job on a
/// non-finite loss, and keeps the phase's cadence of progress lines (with tokens/s and MFU),
/// validation and checkpoints. Collective.
public final class TrainingLoop {
    public enum Outcome: Sendable { case finished, stopped }

    public let communicator: Communicator
    public let output: RunOutput
    /// Stop (with a checkpoint) once the run has done this many updates.
    public var stopAfter: Int?
    /// Write a checkpoint when this many seconds have passed since the last (0: never by time).
    public var checkpointSeconds: Double
    /// This rank's GEMM rate (GFLOP/s) at start-up in the run's precision, the peak for MFU.
    public let peakGFLOPS: Double
    private var lastCheckpoint = DispatchTime.now().uptimeNanoseconds
    /// The run step of the last checkpoint this loop wrote (a stop right after it needs no other).
    private var lastCheckpointStep: Int?
    /// Where the phases' checkpoints are written in the background: a failed write (a full disk)
    /// stops the run at the next update, and the stop's checkpoint reports the failure.
    private let writer: CheckpointWriter?

    public init(communicator: Communicator, output: RunOutput, stopAfter: Int? = nil, checkpointMinutes: Double = 0,
                precision: Precision = .fp32, writer: CheckpointWriter? = nil) {
        self.communicator = communicator
        self.writer = writer
        self.output = output
        self.stopAfter = stopAfter
        checkpointSeconds = 60 * checkpointMinutes
        peakGFLOPS = GemmProbe.peakGFLOPS(precision: precision)
    }

    /// Runs `phase` to its end, or until the ranks agree to stop (after writing a checkpoint).
    /// A rank whose peer is gone (stopped inside a collective its peers never finish because one
    /// died and mpirun is ending the job, or a watchdog timeout naming a rank that stopped
    /// responding) saves the last completed update alone and ends with an error naming it.
    public func run(_ phase: TrainingPhase) throws -> Outcome {
        do {
            return try loop(phase)
        } catch let error where error is CollectiveInterrupted || error is WatchdogTimeout {
            guard let path = try phase.emergencyCheckpoint() else { throw error }
            throw LostPeer(cause: error, checkpoint: path, step: phase.runStep)
        }
    }

    private func loop(_ phase: TrainingPhase) throws -> Outcome {
        var window = RunWindow()
        lastCheckpointStep = nil
        while phase.completed < phase.updates && !phase.finishedEarly {
            switch try agreement(phase) {
            case .stop:
                if lastCheckpointStep != phase.runStep { try checkpoint(phase) }
                return .stopped
            case .checkpoint:
                try checkpoint(phase)
            case .proceed:
                break
            }
            try phase.prepareUpdate()
            let result = try phase.update()
            guard result.loss.isFinite else { throw JobError(phase.nonFiniteLoss(result)) }
            window.add(result)
            try phase.finishUpdate(result)
            let cadence = phase.cadence, done = phase.completed
            let last = done == phase.updates || phase.finishedEarly
            if done % cadence.logEvery == 0 || last || stopsNext(phase) {
                finish(&window, phase: phase)
                if let (line, record) = phase.report(window, result: result, last: last) {
                    output.progress(line, final: last)
                    output.metric(record)
                }
                window = RunWindow()
            }
            if last ? cadence.evaluateAtEnd : cadence.evalEvery > 0 && done % cadence.evalEvery == 0 {
                try phase.evaluate(last: last)
            }
            if last ? cadence.checkpointAtEnd : cadence.checkpointEvery > 0 && done % cadence.checkpointEvery == 0 {
                try checkpoint(phase)
            }
        }
        return .finished
    }

    private func checkpoint(_ phase: TrainingPhase) throws {
        try phase.checkpoint()
        lastCheckpoint = DispatchTime.now().uptimeNanoseconds
        lastCheckpointStep = phase.runStep
    }

    /// Whether `stopAfter` ends the run before the next update (so the window is logged now).
    private func stopsNext(_ phase: TrainingPhase) -> Bool {
        stopAfter.map { phase.runStep >= $0 } ?? false
    }

    private func finish(_ window: inout RunWindow, phase: TrainingPhase) {
        guard window.seconds > 0 else { return }
        window.tokensPerSecond = Double(window.tokens) / window.seconds
        window.mfu = window.tokensPerSecond * phase.flopsPerToken / (peakGFLOPS * 1e9 * Double(communicator.size))
        window.secondsLeft = Double(phase.updates - phase.completed) * window.seconds / Double(window.steps)
    }

    private enum Agreement: Int64 { case proceed = 0, checkpoint = 1, stop = 2 }

    /// Before each update: stop (a signal on any rank, `stopAfter` reached, or a failed background
    /// checkpoint write), write a time-based checkpoint (rank 0's clock), or go on. One small all-reduce (max) on several
    /// ranks, so they all decide the same.
    private func agreement(_ phase: TrainingPhase) throws -> Agreement {
        var mine = Agreement.proceed
        if StopSignal.requested || stopsNext(phase) || writer?.hasFailed == true {
            mine = .stop
        } else if communicator.isRoot && checkpointSeconds > 0
                    && Double(DispatchTime.now().uptimeNanoseconds - lastCheckpoint) / 1e9 >= checkpointSeconds {
            mine = .checkpoint
        }
        guard communicator.size > 1 else { return mine }
        let agreed = try communicator.allReduce(mine.rawValue, .max, label: "stop agreement before update \(phase.runStep + 1)")
        return Agreement(rawValue: agreed) ?? .stop
    }
}

/// The end of a job whose peer died: this rank saved the last completed update on its own.
public struct LostPeer: Error, CustomStringConvertible {
    /// What showed the peer was gone (`CollectiveInterrupted` or `WatchdogTimeout`).
    public let cause: Error
    public let checkpoint: String
    public let step: Int

    public var description: String {
        "\(cause); saved the state after update \(step) to \(checkpoint) (continue with --resume)"
    }
}
