import Tensors

/// A BERT masked language model: token and learned position embeddings with a LayerNorm on their
/// sum, post-LN encoder blocks (x = LN(x + Attention(x)); x = LN(x + MLP(x))) with bidirectional
/// attention that ignores padding keys (`config.padToken`), exact (erf) GELU, dropout on the
/// embeddings, attention probabilities and both branches, and an MLM head (dense D -> D, GELU,
/// LayerNorm, projection tied to the token embedding, plus an output bias).
///
/// As in fairseq, the head runs only where a prediction is needed: at the positions whose target
/// is >= 0 when targets are given (the masked positions; the loss is their mean), at every
/// position otherwise. `logits` then holds one row per predicted position, in position order
/// (`predictedPositions`). For the same reason the last block runs its per-position part (output
/// projection, norms, MLP) only at those rows; its attention still reads every position. Both
/// are exact: nothing else reads the skipped rows.
///
/// Parameters and gradients are flat buffers laid out by `BERTLayout`; the config, buffers,
/// initialization and activation memory are `TransformerModel`'s. Activations live in one buffer
/// sized for the batch shape; `backward` adds into `gradients`. `logits` has `predictedCount` rows.
/// Under `precision` bf16 the products read the bf16 weight copy and bf16 activations
/// (docs/ARCHITECTURE.md, "bf16").
public final class BERT: TransformerModel<BERTLayout, BERTActivations>, ArchitectureModel {
    /// Rows the head predicts (positions in the (B, T) batch) and their targets, compacted.
    private var predicted = Buffer<Int32>(count: 0)
    private var predictedTargets = Buffer<Int32>(count: 0)
    private var hasPadding = false
    /// Whether the last block's per-position part ran only at the predicted rows.
    private var lastPruned = false
    /// Whether the last pass was `encodeFirstPositions` (no head).
    private var lastEncodedOnly = false
    /// Number of rows the head predicted in the last forward pass (rows of `logits`).
    public private(set) var predictedCount = 0
    /// The mean loss over the predicted positions of the last forward pass with targets, in Float64.
    public private(set) var lastLoss: Double = 0

    /// The batch positions (b * T + t) of the rows of `logits`, in order.
    public var predictedPositions: UnsafePointer<Int32> { UnsafePointer(predicted.pointer) }

    /// Runs B sequences of T tokens (row-major (B, T)). With `targets` ((B, T), negative = not
    /// predicted) returns the mean loss over the positions with a target; without, the head
    /// predicts every position and the result is 0. Dropout is active when `dropoutSeed` is given
    /// and the config's dropout is positive.
    @discardableResult
    public func forward(
        tokens inputTokens: UnsafePointer<Int32>, targets inputTargets: UnsafePointer<Int32>?,
        batch b: Int, seq t: Int, dropoutSeed: UInt64?
    ) -> Float {
        let c = config, n = b * t, d = c.width, v = c.vocab
        let acts = beginPass(batch: b, seq: t, hasTargets: inputTargets != nil, dropoutSeed: dropoutSeed)

        // The rows the head predicts.
        var m = 0
        if let inputTargets {
            for i in 0..<n where inputTargets[i] >= 0 {
                precondition(Int(inputTargets[i]) < v, "target \(inputTargets[i]) at position \(i) outside vocabulary 0..<\(v)")
                predicted[m] = Int32(i)
                predictedTargets[m] = inputTargets[i]
                m += 1
            }
        } else {
            for i in 0..<n { predicted[i] = Int32(i) }
            m = n
        }
        predictedCount = m
        lastPruned = m < n
        lastEncodedOnly = false
        runEncoder(inputTokens, batch: b, seq: t)
        settleArrivals()

        // MLM head on the predicted rows (the first m rows of the last output, in order):
        // logits = LN(GELU(dense(x))) wte^T + bias.
        let P = storage.pointer, A = actBuffer.pointer, affine = c.normalization == .affine
        let W = weights(refreshing: false)
        let eps = c.layerNormEpsilon, norm = ramp?.norm
        Linear.forward(out: A + acts.headPre, x: acts.output[c.layers].operand(A), weight: W[layout.headDenseWeight],
                       bias: P + layout.headDenseBias, rows: m, inFeatures: d, outFeatures: d)
        ErfGELU.forward(out: A + acts.headPost, x: A + acts.headPre, count: m * d)
        LayerNorm.forward(out: acts.headNorm.output(A), mean: A + acts.headMean, rstd: A + acts.headRstd, x: A + acts.headPost,
                          weight: P + layout.headNormWeight, bias: P + layout.headNormBias, rows: m, width: d,
                          epsilon: eps, affine: affine, mask: norm)
        Linear.forward(out: A + acts.logits, x: acts.headNorm.operand(A), weight: W[layout.tokenEmbedding],
                       bias: P + layout.outputBias, rows: m, inFeatures: d, outFeatures: v)
        guard inputTargets != nil else { return 0 }
        let (sum, _) = CrossEntropy.forward(losses: A + acts.losses, logSumExp: A + acts.logSumExp, logits: A + acts.logits,
                                            targets: predictedTargets.pointer, rows: m, vocab: v)
        lastLoss = m > 0 ? sum / Double(m) : 0
        return Float(lastLoss)
    }

    /// The encoder alone, for a sequence classifier: runs B sequences of T tokens and returns the
    /// final hidden state at position 0 (the `<|bos|>` vector) of each, (B, D) row-major. The
    /// last block runs only at those rows and the MLM head not at all. Dropout as in `forward`.
    public func encodeFirstPositions(tokens inputTokens: UnsafePointer<Int32>, batch b: Int, seq t: Int,
                                     dropoutSeed: UInt64?) -> UnsafePointer<Float> {
        let acts = beginPass(batch: b, seq: t, hasTargets: false, dropoutSeed: dropoutSeed)
        for row in 0..<b { predicted[row] = Int32(row * t) }
        predictedCount = b
        lastPruned = b < b * t
        lastEncodedOnly = true
        runEncoder(inputTokens, batch: b, seq: t)
        settleArrivals()
        return UnsafePointer(acts.output[config.layers].floats(actBuffer.pointer))
    }

    /// Adds into `gradients` the gradient of a loss whose gradient with respect to the vectors of
    /// the last `encodeFirstPositions` is `dFirst` (B, D).
    public func backwardFirstPositions(_ dFirst: UnsafePointer<Float>) {
        guard let acts, lastEncodedOnly else { preconditionFailure("backwardFirstPositions without encodeFirstPositions") }
        (actBuffer.pointer + acts.dOutput).update(from: dFirst, count: lastBatch * config.width)
        backwardEncoder()
        lastEncodedOnly = false
    }

    /// Embeddings and blocks for the batch `forward` or `encodeFirstPositions` set up; the last
    /// block's per-position part runs at the `predicted` rows only when `lastPruned`.
    private func runEncoder(_ inputTokens: UnsafePointer<Int32>, batch b: Int, seq t: Int) {
        let c = config, n = b * t, d = c.width, a = c.attentionWidth, f = c.ffn, m = predictedCount
        let acts = self.acts!
        tokens.pointer.update(from: inputTokens, count: n)
        for i in 0..<n where inputTokens[i] < 0 || Int(inputTokens[i]) >= c.vocab {
            preconditionFailure("token id \(inputTokens[i]) at position \(i) outside vocabulary 0..<\(c.vocab)")
        }
        let P = storage.pointer, A = actBuffer.pointer, affine = c.normalization == .affine
        let W = weights(refreshing: true)
        let eps = c.layerNormEpsilon
        let shape = Attention.Shape(batch: b, seq: t, heads: c.heads, headDim: c.headDim)
        let scratch = A + acts.block.attentionScratch
        let keyMask = A + acts.keyMask
        let ramp = self.ramp, norm = ramp?.norm
        hasPadding = false
        if let pad = c.padToken {
            for i in 0..<n {
                let isPad = inputTokens[i] == pad
                keyMask[i] = isPad ? 0 : 1
                hasPadding = hasPadding || isPad
            }
        }

        // Parameters still arriving are waited for part by part: embeddings, each block, the head.
        arrive(through: layout.blocks.first?.qkvWeight ?? layout.headDenseWeight)
        Embedding.forward(out: A + acts.embeddingSum, tokens: tokens.pointer, wte: P + layout.tokenEmbedding,
                          wpe: P + layout.positionEmbedding, batch: b, seq: t, width: d)
        ramp?.scaleNewDimensions(A + acts.embeddingSum, rows: n)
        // output[0] = dropout(LN(embeddings)); the bf16 copy products read is of the dropped-out values.
        let embedded = acts.output[0], drop = dropouts.at(site: 0)
        LayerNorm.forward(out: drop == nil ? embedded.output(A) : .float(embedded.floats(A)), mean: A + acts.embeddingMean,
                          rstd: A + acts.embeddingRstd, x: A + acts.embeddingSum, weight: P + layout.embeddingNormWeight,
                          bias: P + layout.embeddingNormBias, rows: n, width: d, epsilon: eps, affine: affine, mask: norm)
        if let drop { drop.apply(out: embedded.output(A), x: embedded.floats(A), count: n * d) }

        for (l, w) in layout.blocks.enumerated() {
            let s = acts.layers[l], x = acts.output[l]
            arrive(through: l + 1 < c.layers ? layout.blocks[l + 1].qkvWeight : layout.headDenseWeight)
            // Attention over every position (under bf16 it keeps the bf16 copy of qkv's product).
            let qkv = A + (s.qkv.float ?? acts.block.qkvFloat!)
            Linear.forward(out: qkv, x: x.operand(A), weight: W[w.qkvWeight], bias: P + w.qkvBias,
                           rows: n, inFeatures: d, outFeatures: 3 * a)
            ramp?.scaleNewValues(qkv, rows: n, attentionWidth: a)
            Attention.forward(out: s.atty.output(A), att: A + s.att, qkv: qkv, qkvCopy: s.qkv.half.map { bf16(A + $0) }, shape: shape,
                              mask: .keys(hasPadding ? keyMask : nil), dropout: dropouts.at(site: 1 + 3 * l), scratch: scratch)
            // The rest of the block is per position: the last block runs it only at the rows the
            // head reads.
            let r = rows(ofBlock: l)
            if r.count < n {
                RowGather.forward(out: r.input, x: x.floats(A), rows: predicted.pointer, count: m, width: d)
                s.atty.gather(into: r.atty, A, rows: predicted.pointer, count: m, width: a)
            }
            let branch = A + acts.branch, k = r.count
            Linear.forward(out: branch, x: r.atty.operand(A), weight: W[w.attnProjWeight], bias: P + w.attnProjBias,
                           rows: k, inFeatures: a, outFeatures: d)
            dropouts.addResidual(out: A + s.residual1, x: r.input, branch: branch, count: k * d, site: 2 + 3 * l)
            LayerNorm.forward(out: s.hidden.output(A), mean: A + s.ln1Mean, rstd: A + s.ln1Rstd, x: A + s.residual1,
                              weight: P + w.ln1Weight, bias: P + w.ln1Bias, rows: k, width: d, epsilon: eps, affine: affine,
                              mask: norm)
            Linear.forward(out: A + s.fcPre, x: s.hidden.operand(A), weight: W[w.fcWeight], bias: P + w.fcBias,
                           rows: k, inFeatures: d, outFeatures: f)
            ErfGELU.forward(out: s.fcPost.output(A), x: A + s.fcPre, rows: k, width: f, mask: ramp?.ffnMask)
            Linear.forward(out: branch, x: s.fcPost.operand(A), weight: W[w.fcProjWeight], bias: P + w.fcProjBias,
                           rows: k, inFeatures: f, outFeatures: d)
            dropouts.addResidual(out: A + s.residual2, x: s.hidden.floats(A), branch: branch, count: k * d, site: 3 + 3 * l)
            // A block a masked ramp inserted outputs x + m (LN2(...) - x): LN2 into float32 first.
            let blend = ramp?.branchScale(layer: l)
            let output = acts.output[l + 1]
            LayerNorm.forward(out: blend == nil ? output.output(A) : .float(output.floats(A)), mean: A + s.ln2Mean,
                              rstd: A + s.ln2Rstd, x: A + s.residual2, weight: P + w.ln2Weight, bias: P + w.ln2Bias,
                              rows: k, width: d, epsilon: eps, affine: affine, mask: norm)
            if let blend {
                RampBlend(y: output.floats(A), x: r.input, m: blend, count: k * d).run(into: output.output(A))
            }
        }
    }

    public var logitRowCount: Int { predictedCount }
    public var logitRowTargets: UnsafePointer<Int32> { UnsafePointer(predictedTargets.pointer) }

    /// Adds d(loss)/d(parameters) into `gradients`: the last forward's mean loss over the
    /// predicted positions, or the loss whose logit gradient `headGradient` writes
    /// (`LanguageModel.backward(headGradient:)`). Tells `observer` which gradients are final as
    /// it goes: the MLM head (except the tied projection) after the head, block l after block l's
    /// backward, L-1 first. The embeddings (the tied `wte` among them) are final only at the end
    /// and not reported.
    public func backward(headGradient: ((UnsafeMutablePointer<Float>) -> Void)?, observer: GradientObserver?) {
        guard let acts, lastHadTargets else { preconditionFailure("backward without a forward pass with targets") }
        let c = config, m = predictedCount, d = c.width, v = c.vocab
        let P = storage.pointer, G = gradients.pointer, A = actBuffer.pointer
        let W = weights(refreshing: false)
        let affine = c.normalization == .affine
        let dOutput = A + acts.dOutput, dResidual = A + acts.dResidual, branch = A + acts.branch
        let ramp = self.ramp

        // Head, in reverse: projection (tied) and bias, norm, GELU, dense. dOutput gets the
        // gradient of the last block's output rows.
        if let headGradient {
            headGradient(A + acts.logits)
        } else {
            CrossEntropy.backward(logits: A + acts.logits, logSumExp: A + acts.logSumExp, targets: predictedTargets.pointer,
                                  rows: m, vocab: v, scale: m > 0 ? 1 / Float(m) : 0)
        }
        Linear.backward(dx: dResidual, dweight: G + layout.tokenEmbedding, dbias: G + layout.outputBias,
                        dout: A + acts.logits, x: acts.headNorm.operand(A), weight: W[layout.tokenEmbedding],
                        rows: m, inFeatures: d, outFeatures: v, doutCopy: precision == .bf16 ? .inPlace : .none)
        branch.update(repeating: 0, count: m * d)
        LayerNorm.backward(dx: branch, dweight: G + layout.headNormWeight, dbias: G + layout.headNormBias,
                           dout: dResidual, x: A + acts.headPost, weight: P + layout.headNormWeight,
                           mean: A + acts.headMean, rstd: A + acts.headRstd, rows: m, width: d, affine: affine, mask: ramp?.norm)
        ErfGELU.backward(dx: branch, dout: branch, x: A + acts.headPre, count: m * d)
        Linear.backward(dx: dOutput, dweight: G + layout.headDenseWeight, dbias: G + layout.headDenseBias,
                        dout: branch, x: acts.output[c.layers].operand(A), weight: W[layout.headDenseWeight],
                        rows: m, inFeatures: d, outFeatures: d, doutCopy: .scratch(acts.block.doutCopy, in: A))
        observer?.gradientsFinal(layout.headDenseWeight..<layout.parameterCount)  // [gradient observer]
        backwardEncoder(observer: observer)
        lastHadTargets = false  // the logits now hold gradients
    }

    /// The blocks and embeddings in reverse; `dOutput` holds the gradient of the last block's
    /// output rows (the predicted rows when the last block was pruned, else every position).
    private func backwardEncoder(observer: GradientObserver? = nil) {
        guard let acts else { return }
        let c = config, b = lastBatch, t = lastSeq, n = b * t
        let d = c.width, a = c.attentionWidth, f = c.ffn
        let P = storage.pointer, G = gradients.pointer, A = actBuffer.pointer
        let W = weights(refreshing: false), copy = Linear.GradientCopy.scratch(acts.block.doutCopy, in: A)
        let affine = c.normalization == .affine
        let shape = Attention.Shape(batch: b, seq: t, heads: c.heads, headDim: c.headDim)
        let scratch = A + acts.block.attentionScratch
        let dOutput = A + acts.dOutput, dResidual = A + acts.dResidual
        let ramp = self.ramp, norm = ramp?.norm
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let w = layout.blocks[l], s = acts.layers[l]
            let r = rows(ofBlock: l), k = r.count
            // [gradient observer] Block l's parameters end where block l + 1's (or the head's)
            // begin; each tensor is reported as soon as it is final (as GPT does).
            let blockEnd = l + 1 < c.layers ? layout.blocks[l + 1].qkvWeight : layout.headDenseWeight
            // A block a ramp inserted: output = x + m (f(x) - x); the skip path's (1 - m) share
            // waits in rampSkip, the block's own gradient is m times the output's.
            let blend = ramp?.branchScale(layer: l)
            if let blend {
                (A + acts.rampSkip).update(from: dOutput, count: k * d)
                scaleInPlace(A + acts.rampSkip, 1 - blend, count: k * d)
                scaleInPlace(dOutput, blend, count: k * d)
            }
            // output = ln2(residual2), residual2 = hidden + dropout(fcProj(gelu(fc(hidden))))
            dResidual.update(repeating: 0, count: k * d)
            LayerNorm.backward(dx: dResidual, dweight: G + w.ln2Weight, dbias: G + w.ln2Bias, dout: dOutput,
                               x: A + s.residual2, weight: P + w.ln2Weight, mean: A + s.ln2Mean, rstd: A + s.ln2Rstd,
                               rows: k, width: d, affine: affine, mask: norm)
            observer?.gradientsFinal(w.ln2Weight..<blockEnd)
            var dBranch = dropouts.branchGradient(dResidual, count: k * d, site: 3 + 3 * l)
            Linear.backward(dx: A + acts.block.dFC, dweight: G + w.fcProjWeight, dbias: G + w.fcProjBias, dout: dBranch,
                            x: s.fcPost.operand(A), weight: W[w.fcProjWeight], rows: k, inFeatures: f, outFeatures: d,
                            doutCopy: copy) {
                observer?.gradientsFinal(w.fcProjWeight..<w.ln2Weight)
            }
            ramp?.scaleNewUnits(A + acts.block.dFC, rows: k, ffn: f)
            ErfGELU.backward(dx: A + acts.block.dFC, dout: A + acts.block.dFC, x: A + s.fcPre, count: k * f)
            // dResidual becomes d(hidden): the skip path plus the MLP's input gradient.
            Linear.backward(dx: dResidual, dweight: G + w.fcWeight, dbias: G + w.fcBias, dout: A + acts.block.dFC,
                            x: s.hidden.operand(A), weight: W[w.fcWeight], rows: k, inFeatures: d, outFeatures: f,
                            accumulateInput: true, doutCopy: copy) {
                observer?.gradientsFinal(w.fcWeight..<w.fcProjWeight)
            }
            // hidden = ln1(residual1), residual1 = x + dropout(proj(attention(qkv(x))))
            dOutput.update(repeating: 0, count: k * d)
            LayerNorm.backward(dx: dOutput, dweight: G + w.ln1Weight, dbias: G + w.ln1Bias, dout: dResidual,
                               x: A + s.residual1, weight: P + w.ln1Weight, mean: A + s.ln1Mean, rstd: A + s.ln1Rstd,
                               rows: k, width: d, affine: affine, mask: norm)
            observer?.gradientsFinal(w.ln1Weight..<w.fcWeight)
            dBranch = dropouts.branchGradient(dOutput, count: k * d, site: 2 + 3 * l)
            // A pruned block's row gradients go back to every position: d(atty) through the
            // (free) dQKV scratch, d(x) through dResidual; both are zero at the other rows.
            let dAttyRows = k < n ? A + acts.block.dQKV : A + acts.block.dAtty
            Linear.backward(dx: dAttyRows, dweight: G + w.attnProjWeight, dbias: G + w.attnProjBias, dout: dBranch,
                            x: r.atty.operand(A), weight: W[w.attnProjWeight], rows: k, inFeatures: a, outFeatures: d,
                            doutCopy: copy) {
                observer?.gradientsFinal(w.attnProjWeight..<w.ln1Weight)
            }
            if blend != nil { addInPlace(dOutput, A + acts.rampSkip, count: k * d) }
            if k < n {
                (A + acts.block.dAtty).update(repeating: 0, count: n * a)
                RowGather.backward(dx: A + acts.block.dAtty, dout: dAttyRows, rows: predicted.pointer, count: k, width: a)
                dResidual.update(from: dOutput, count: k * d)
                dOutput.update(repeating: 0, count: n * d)
                RowGather.backward(dx: dOutput, dout: dResidual, rows: predicted.pointer, count: k, width: d)
            }
            Attention.backward(dqkv: A + acts.block.dQKV, dout: A + acts.block.dAtty, qkv: s.qkv.operand(A), att: A + s.att,
                               shape: shape, mask: .keys(nil), dropout: dropouts.at(site: 1 + 3 * l), scratch: scratch)
            ramp?.scaleNewValues(A + acts.block.dQKV, rows: n, attentionWidth: a)
            // dOutput becomes d(x), the gradient of the previous block's output.
            Linear.backward(dx: dOutput, dweight: G + w.qkvWeight, dbias: G + w.qkvBias, dout: A + acts.block.dQKV,
                            x: acts.output[l].operand(A), weight: W[w.qkvWeight], rows: n, inFeatures: d, outFeatures: 3 * a,
                            accumulateInput: true, doutCopy: copy) {
                observer?.gradientsFinal(w.qkvWeight..<w.attnProjWeight)
            }
        }
        let dNormOut = dropouts.branchGradient(dOutput, count: n * d, site: 0)
        dResidual.update(repeating: 0, count: n * d)
        LayerNorm.backward(dx: dResidual, dweight: G + layout.embeddingNormWeight, dbias: G + layout.embeddingNormBias,
                           dout: dNormOut, x: A + acts.embeddingSum, weight: P + layout.embeddingNormWeight,
                           mean: A + acts.embeddingMean, rstd: A + acts.embeddingRstd, rows: n, width: d, affine: affine,
                           mask: norm)
        ramp?.scaleNewDimensions(dResidual, rows: n)
        Embedding.backward(dwte: G + layout.tokenEmbedding, dwpe: G + layout.positionEmbedding,
                           dout: dResidual, tokens: tokens.pointer, batch: b, seq: t, width: d)
    }

    /// The rows block l's per-position part (after attention) runs on, and where its inputs are:
    /// every position, or for the last block of a pass that predicts fewer rows (training), just
    /// the predicted rows, gathered (its other outputs would never be read).
    private func rows(ofBlock l: Int) -> (count: Int, input: UnsafeMutablePointer<Float>, atty: OperandSlot) {
        let A = actBuffer.pointer, acts = self.acts!
        if lastPruned && l == config.layers - 1 {
            return (predictedCount, A + acts.prunedInput, acts.prunedAtty)
        }
        return (lastBatch * lastSeq, acts.output[l].floats(A), acts.layers[l].atty)
    }


    // MARK: helpers

    override func allocatePositionBuffers(_ positions: Int) {
        predicted = Buffer<Int32>(count: positions)
        predictedTargets = Buffer<Int32>(count: positions)
    }
}
