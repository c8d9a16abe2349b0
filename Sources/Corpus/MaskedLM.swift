import Tensors

/// How text windows become masked-language-model (BERT) training sequences, and the masking
/// itself (spec section 4; BERT / RoBERTa / fairseq's MaskTokensDataset):
///
/// - A sequence of T tokens is `<|bos|>`, the domain prompt when there is one, then the window's
///   first tokens (the loader's windows hold T + 1 tokens; the 1 or 2 at their end that do not fit
///   are not read).
/// - Of its non-padding positions, floor(0.15 n + u) are chosen (u uniform in [0, 1), so 15% on
///   average, exactly a whole number per sequence), the begin and prompt positions included. Each
///   chosen position's target is its token; the token becomes `<|mask|>` with probability 0.8, a
///   uniformly random ordinary (non-special) token with 0.1, and stays with 0.1. Every other
///   target is -1 (no loss).
/// - The draws are a function of a 64-bit key and the sequence's row (its own generator seeded
///   by both), so masks are dynamic (a new key for every step and micro-batch) yet reproducible:
///   the trainer keys them like dropout by (seed, step, global micro-batch index), so any number
///   of ranks and a resumed run mask exactly alike, with no state to save.
///
/// Codable: it is part of a run's options (saved in checkpoints, compared across ranks).
public struct MaskedLM: Codable, Equatable, Sendable {
    public var beginToken: Int32
    public var maskToken: Int32
    public var padToken: Int32
    /// Random replacements are drawn from 0..<ordinaryTokens (no special tokens).
    public var ordinaryTokens: Int32
    /// The domain prompt placed after `<|bos|>`, or nil for none.
    public var prompt: Int32? = nil
    /// Share of positions chosen for prediction.
    public var maskProbability: Float = 0.15
    /// Of the chosen positions: share replaced by the mask token, and by a random token (the
    /// rest keep their token).
    public var maskTokenShare: Float = 0.8
    public var randomTokenShare: Float = 0.1

    public init(beginToken: Int32, maskToken: Int32, padToken: Int32, ordinaryTokens: Int32, prompt: Int32? = nil) {
        self.beginToken = beginToken
        self.maskToken = maskToken
        self.padToken = padToken
        self.ordinaryTokens = ordinaryTokens
        self.prompt = prompt
    }

    /// The special tokens of a BPE or WordPiece tokenizer (docs/DATA.md).
    public init(tokenizer: SubwordTokenizer, prompt: Int32? = nil) {
        self.init(beginToken: tokenizer.beginOfSequence, maskToken: tokenizer.mask, padToken: tokenizer.pad,
                  ordinaryTokens: Int32(tokenizer.ordinaryCount), prompt: prompt)
    }

    /// Tokens at the start of every sequence (`<|bos|>` and the prompt).
    public var prefixLength: Int { prompt == nil ? 1 : 2 }

    /// Throws naming the first field that does not fit a vocabulary of `vocab` ids.
    public func validate(vocab: Int) throws {
        func check(_ ok: Bool, _ field: String, _ why: String) throws {
            if !ok { throw DataError(path: "masked LM settings", "\(field) \(why)") }
        }
        for (name, id) in [("beginToken", beginToken), ("maskToken", maskToken), ("padToken", padToken)] + (prompt.map { [("prompt", $0)] } ?? []) {
            try check(id >= 0 && Int(id) < vocab, name, "must be a token id in 0..<\(vocab) (got \(id))")
        }
        try check(ordinaryTokens >= 1 && Int(ordinaryTokens) <= vocab, "ordinaryTokens", "must be in 1...\(vocab) (got \(ordinaryTokens))")
        try check(maskProbability > 0 && maskProbability <= 1, "maskProbability", "must be in (0, 1] (got \(maskProbability))")
        try check(maskTokenShare >= 0 && randomTokenShare >= 0 && maskTokenShare + randomTokenShare <= 1,
                  "maskTokenShare", "and randomTokenShare must be shares adding up to at most 1 (got \(maskTokenShare), \(randomTokenShare))")
    }

    /// Turns B loader windows into masked sequences, in place. On entry `tokens` (B, T) holds each
    /// window's first T tokens (`targets` is ignored); on return `tokens` holds the model's input
    /// and `targets` (B, T) the original token at each chosen position and -1 elsewhere.
    public func makeSequences(tokens: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                              batch b: Int, seq t: Int, key: UInt64) {
        let k = min(prefixLength, t)
        for row in 0..<b {
            let x = tokens + row * t
            // Shift the text right past the prefix.
            if t > k {
                for i in stride(from: t - 1, through: k, by: -1) { x[i] = x[i - k] }
            }
            x[0] = beginToken
            if k == 2, let prompt { x[1] = prompt }
        }
        mask(tokens: tokens, targets: targets, batch: b, seq: t, key: key)
    }

    /// Chooses and corrupts positions of B finished sequences in place (see the type's comment);
    /// `targets` receives the originals at the chosen positions and -1 elsewhere. Padding is never
    /// chosen.
    public func mask(tokens: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>,
                     batch b: Int, seq t: Int, key: UInt64) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(t, 1)) { candidates in
            for row in 0..<b {
                let x = tokens + row * t, y = targets + row * t
                var rng = Xoshiro256(seed: SplitMix64.mix(key, UInt64(row)))
                var n = 0
                for i in 0..<t {
                    y[i] = -1
                    if x[i] != padToken { candidates[n] = Int32(i); n += 1 }
                }
                let chosen = min(n, Int(Float(n) * maskProbability + rng.nextFloat()))
                // Partial Fisher-Yates: the first `chosen` candidates become a uniform sample.
                for j in 0..<chosen {
                    let pick = j + rng.nextInt(below: n - j)
                    candidates.swapAt(j, pick)
                    let i = Int(candidates[j])
                    y[i] = x[i]
                    let u = rng.nextFloat()
                    if u < maskTokenShare {
                        x[i] = maskToken
                    } else if u < maskTokenShare + randomTokenShare {
                        x[i] = Int32(rng.nextInt(below: Int(ordinaryTokens)))
                    }
                }
            }
        }
    }
}
