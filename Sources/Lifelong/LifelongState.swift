import Corpus
import Foundation
import Training

/// Where a lifelong run stands and what it has measured: saved in every checkpoint (in
/// `TrainingState.lifelong`) so a run can report and continue.
public struct LifelongState: Codable, Equatable, Sendable {
    public enum Phase: String, Codable, Sendable {
        /// Function recovering warmup after a growth.
        case frw
        /// Training on the stage's domain.
        case main
    }

    /// The stage in progress (or the next one, when `phase` is nil).
    public var stage: Int
    public var phase: Phase?
    /// Updates done in the current phase.
    public var stepInPhase: Int
    /// Loader positions of the current phase: the phase's own data, then one per replayed domain.
    public var loaders: [LoaderPosition]
    public var adaptive: AdaptiveReplayWeights?
    public var matrix: PerplexityMatrix
    /// Training FLOPs so far (`FLOPCount`, as `elle bench` counts them; warmups
    /// included, evaluation not).
    public var flops: Double
    /// Validation perplexity of the seen domains around each growth, by stage: before growing,
    /// right after, and after the warmup.
    public var growthEffects: [GrowthEffect]
    /// The number of ranks the plan's per-rank `accumulation` was meant for (the job that started
    /// the run): a resume on another rank count keeps accumulation x this many micro-batches per
    /// update. Nil in checkpoints from before elastic resume (their own rank count then).
    public var planRanks: Int?
    /// The plan's plateau growth policy (`growOnPlateau`) with its history and ladder position.
    public var policy: PlateauPolicy?
    /// With a policy, the main phase's FLOP budget: run FLOPs at its start and FLOPs per update of
    /// the model it started with (the stage's `steps` are counted in those updates).
    public var phaseStartFLOPs: Double?
    public var phaseUpdateFLOPs: Double?

    public struct GrowthEffect: Codable, Equatable, Sendable {
        public var stage: Int
        public var before: [Double]
        public var afterGrowth: [Double]
        public var afterWarmup: [Double]?
    }

    public init(domains: [String], ranks: Int) {
        planRanks = ranks
        stage = 0
        phase = nil
        stepInPhase = 0
        loaders = []
        adaptive = nil
        matrix = PerplexityMatrix(domains: domains)
        flops = 0
        growthEffects = []
    }

    /// The state a lifelong checkpoint holds; nil for a plain run's checkpoint.
    public init?(checkpoint state: TrainingState) throws {
        guard let value = state.lifelong else { return nil }
        self = try value.decode(LifelongState.self)
    }

    /// Canonical JSON (sorted keys), compared across ranks before every checkpoint.
    public func encoded() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
