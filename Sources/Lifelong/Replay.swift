import Tensors

/// How replayed micro-batches pick their old domain.
public enum ReplayWeighting: String, Codable, Sendable, CaseIterable {
    /// Every finished domain equally likely.
    case uniform
    /// ELLE's rule: domains whose validation loss is dropping fastest per replayed token are
    /// replayed more (`AdaptiveReplayWeights`).
    case adaptive
}

/// The replay decision of one global update: which of its micro-batches come from memory, and
/// from which old domain. Made from a seed every rank shares, so every rank replays the same
/// domains in the same slots and the averaged gradient stays a proper mixture.
public struct ReplayDecision: Equatable, Sendable {
    /// One entry per micro-batch of the update: nil = the current domain, j = memory of domain j.
    public var sources: [Int?]
    public var replayed: Int { sources.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }
}

/// Spec section 5: per update of A micro-batches, floor(ratio * A + U[0,1)) of the *last*
/// micro-batches are swapped for memory micro-batches of the same size; each picks its domain
/// from `weights` (one per earlier domain).
public enum ReplayScheduler {
    public static func decide(
        microBatches a: Int, ratio: Double, weights: [Double], seed: UInt64, stage: Int, update: Int
    ) -> ReplayDecision {
        var sources = [Int?](repeating: nil, count: a)
        guard !weights.isEmpty, ratio > 0 else { return ReplayDecision(sources: sources) }
        var rng = Xoshiro256(seed: SeedStream.replay(seed: seed, phase: stage, update: update))
        let count = min(a, Int((ratio * Double(a) + rng.nextDouble()).rounded(.down)))
        let total = weights.reduce(0, +)
        for slot in (a - count)..<a {
            var u = rng.nextDouble() * total
            var pick = weights.count - 1
            for (j, w) in weights.enumerated() {
                u -= w
                if u < 0 { pick = j; break }
            }
            sources[slot] = pick
        }
        return ReplayDecision(sources: sources)
    }
}

/// ELLE's adaptive replay weights (spec section 5). Every `interval` updates, for each old
/// domain j: r_j = (previous valid loss_j - valid loss_j) / tokens replayed from j since then;
/// r_j = 1 the first time (no previous loss); a non-positive r_j becomes max_k r_k during the
/// first half of a stage or during FRW, and 0 otherwise; every r_j is floored at 1e-9; a domain
/// with no replayed tokens since the last refresh keeps its weight (the zero-count guard).
public struct AdaptiveReplayWeights: Codable, Equatable, Sendable {
    public private(set) var weights: [Double]
    public private(set) var previousLoss: [Double?]
    public private(set) var tokensSince: [Int]

    public init(domains: Int) {
        weights = [Double](repeating: 1, count: domains)
        previousLoss = [Double?](repeating: nil, count: domains)
        tokensSince = [Int](repeating: 0, count: domains)
    }

    /// Adds a domain that just finished (weight 1, no history).
    public mutating func addDomain() {
        weights.append(1)
        previousLoss.append(nil)
        tokensSince.append(0)
    }

    public mutating func recordReplay(domain: Int, tokens: Int) { tokensSince[domain] += tokens }

    /// Recomputes the weights from fresh validation losses of the old domains.
    /// `generous` is true in the first half of a stage and during FRW.
    public mutating func refresh(validLosses: [Double], generous: Bool) {
        precondition(validLosses.count == weights.count, "one validation loss per old domain")
        var rates = [Double?](repeating: nil, count: weights.count)
        for j in 0..<weights.count {
            if let previous = previousLoss[j] {
                if tokensSince[j] > 0 { rates[j] = (previous - validLosses[j]) / Double(tokensSince[j]) }
            } else {
                rates[j] = 1
            }
        }
        let best = rates.compactMap { $0 }.max() ?? 1
        for j in 0..<weights.count {
            guard let r = rates[j] else { continue }  // nothing replayed: keep the weight
            let adjusted = r > 0 ? r : (generous ? best : 0)
            weights[j] = max(adjusted, 1e-9)
            previousLoss[j] = validLosses[j]
            tokensSince[j] = 0
        }
    }
}
