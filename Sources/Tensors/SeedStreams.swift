/// Every named stream of elle's stateless randomness, in one place.
///
/// elle keeps no random-number state: each random choice is drawn from a generator seeded by
/// `SplitMix64.mix(runSeed, stream, counters...)`, so a resumed or multi-rank run draws exactly
/// what an uninterrupted single-process run draws. Exact resume depends on these values: never
/// change one (old checkpoints would continue with different masks, data orders or replay).
/// The tags are ASCII where that was convenient ("MASK", "VALD", "REPL", ...).
public enum SeedStream {
    // MARK: training (Training.Trainer)

    /// Masked-LM masks of a training micro-batch: (seed, update, global micro-batch).
    public static func trainingMasks(seed: UInt64, step: Int, microBatch: Int) -> UInt64 {
        SplitMix64.mix(seed, 0x4D41_534B, UInt64(step), UInt64(microBatch))
    }

    /// Dropout of a training micro-batch: (seed, update, global micro-batch); each site mixes
    /// its index in (`DropoutSites`).
    public static func dropout(seed: UInt64, step: Int, microBatch: Int) -> UInt64 {
        SplitMix64.mix(seed, 0xD50_0000, UInt64(step), UInt64(microBatch))
    }

    /// Masked-LM masks of a validation batch: the same at every evaluation.
    public static func validationMasks(seed: UInt64, batch: Int) -> UInt64 {
        SplitMix64.mix(seed, 0x5641_4C44, UInt64(batch))
    }

    // MARK: lifelong runs (Lifelong)

    /// The data order of a lifelong phase: stage i's warmup (FRW) or main phase.
    public static func lifelongPhase(seed: UInt64, stage: Int, warmup: Bool) -> UInt64 {
        SplitMix64.mix(seed, UInt64(stage), warmup ? 1 : 2)
    }

    /// The order of replayed domain j's memory within a phase seeded by `phaseSeed`.
    public static func replayMemory(phaseSeed: UInt64, domain j: Int) -> UInt64 {
        SplitMix64.mix(phaseSeed, UInt64(j) + 1)
    }

    /// Which micro-batches of an update replay, and from which domain: (seed, phase, update).
    public static func replay(seed: UInt64, phase: Int, update: Int) -> UInt64 {
        SplitMix64.mix(seed, 0x5245_504C, UInt64(phase), UInt64(update))
    }

    // MARK: fine-tuning (Finetune)

    /// The order of the training examples in an epoch.
    public static func finetuneEpoch(seed: UInt64, epoch: Int) -> UInt64 {
        SplitMix64.mix(seed, 0x4550_4F43, UInt64(epoch))
    }

    /// Encoder dropout of a fine-tuning update on one rank.
    public static func finetuneDropout(seed: UInt64, step: Int, rank: Int) -> UInt64 {
        SplitMix64.mix(seed, 0xF1E7, UInt64(step), UInt64(rank))
    }

    /// The classifier head's dropout, from the update's encoder dropout seed.
    public static func classifierDropout(_ updateSeed: UInt64) -> UInt64 {
        SplitMix64.mix(updateSeed, 0x4844)
    }

    /// The classifier head's initial weights, per tensor.
    public static func classifierInit(seed: UInt64, tensor: Int) -> UInt64 {
        SplitMix64.mix(seed, 0x4845_4144, UInt64(tensor))
    }

    // MARK: data preparation (Corpus)

    /// The files of domain d that train a tokenizer, in this order.
    public static func tokenizerSample(seed: UInt64, domain d: Int) -> UInt64 {
        SplitMix64.mix(seed, 0x70C, UInt64(d))
    }

    /// Which pieces of a domain go to valid and memory (by the domain name's stable hash).
    public static func domainSplit(seed: UInt64, domainHash: UInt64) -> UInt64 {
        SplitMix64.mix(seed, 0x5B17, domainHash)
    }
}
