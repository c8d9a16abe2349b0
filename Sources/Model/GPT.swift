import Tensors

/// A GPT-2-architecture causal language model: token and learned position embeddings, pre-LN
/// blocks (LayerNorm, causal self-attention, residual; LayerNorm, GELU MLP, residual), a final
/// LayerNorm, and an output projection tied to the token embedding.
///
/// Parameters and gradients are flat buffers laid out by `GPTLayout`; the config, buffers,
/// initialization and activation memory are `TransformerModel`'s. `forward` saves what
/// `backward` needs in one activation buffer sized for the batch shape (reallocated only when the
/// shape grows). `backward` adds into `gradients`: call `zeroGradients()` before a micro-batch.
/// Under `precision` bf16 the products read the bf16 weight copy and bf16 activations
/// (docs/ARCHITECTURE.md, "bf16").
public final class GPT: TransformerModel<GPTLayout, GPTActivations>, ArchitectureModel {
    private var targets = Buffer<Int32>(count: 0)
    /// Shape and loss bookkeeping of the last forward pass.
    private var lastCounted = 0
    /// The mean loss of the last forward pass with targets, in Float64 (summed over rows in order).
    public private(set) var lastLoss: Double = 0

    /// Runs B sequences of T tokens (row-major (B, T)). With `targets` ((B, T), negative = no
    /// loss at that position) returns the mean loss over counted positions; without, returns 0
    /// and only the logits are meaningful. Dropout is active when `dropoutSeed` is given and the
    /// config's dropout is positive; the seed names this pass's masks.
    @discardableResult
    public func forward(
        tokens inputTokens: UnsafePointer<Int32>, targets inputTargets: UnsafePointer<Int32>?,
        batch b: Int, seq t: Int, dropoutSeed: UInt64?
    ) -> Float {
        let c = config, n = b * t, d = c.width, a = c.attentionWidth, f = c.ffn, v = c.vocab
        let acts = beginPass(batch: b, seq: t, hasTargets: inputTargets != nil, dropoutSeed: dropoutSeed)
        tokens.pointer.update(from: inputTokens, count: n)
        if let inputTargets { targets.pointer.update(from: inputTargets, count: n) }
        for i in 0..<n where inputTokens[i] < 0 || Int(inputTokens[i]) >= v {
            preconditionFailure("token id \(inputTokens[i]) at position \(i) outside vocabulary 0..<\(v)")
        }

        let P = storage.pointer, A = actBuffer.pointer, affine = c.normalization == .affine
        let W = weights(refreshing: true)
        let shape = Attention.Shape(batch: b, seq: t, heads: c.heads, headDim: c.headDim)
        let scratch = A + acts.block.attentionScratch

        // Parameters still arriving are waited for part by part: embeddings, each block, the rest.
        arrive(through: layout.blocks.first?.ln1Weight ?? layout.finalNormWeight)
        Embedding.forward(out: A + acts.residual[0], tokens: tokens.pointer, wte: P + layout.tokenEmbedding,
                          wpe: P + layout.positionEmbedding, batch: b, seq: t, width: d)
        let ramp = self.ramp, norm = ramp?.norm
        ramp?.scaleNewDimensions(A + acts.residual[0], rows: n)
        if let drop = dropouts.at(site: 0) { drop.apply(out: A + acts.residual[0], x: A + acts.residual[0], count: n * d) }

        for (l, w) in layout.blocks.enumerated() {
            let s = acts.layers[l]
            let x = A + acts.residual[l], branch = A + acts.branch
            arrive(through: l + 1 < c.layers ? layout.blocks[l + 1].ln1Weight : layout.finalNormWeight)
            LayerNorm.forward(out: s.ln1.output(A), mean: A + s.ln1Mean, rstd: A + s.ln1Rstd, x: x,
                              weight: P + w.ln1Weight, bias: P + w.ln1Bias, rows: n, width: d,
                              epsilon: c.layerNormEpsilon, affine: affine, mask: norm)
            // Under bf16 the qkv product lands in float32 scratch; attention keeps its bf16 copy.
            let qkv = A + (s.qkv.float ?? acts.block.qkvFloat!)
            Linear.forward(out: qkv, x: s.ln1.operand(A), weight: W[w.qkvWeight], bias: P + w.qkvBias,
                           rows: n, inFeatures: d, outFeatures: 3 * a)
            ramp?.scaleNewValues(qkv, rows: n, attentionWidth: a)
            Attention.forward(out: s.atty.output(A), att: A + s.att, qkv: qkv, qkvCopy: s.qkv.half.map { bf16(A + $0) },
                              shape: shape, mask: .causal, dropout: dropouts.at(site: 1 + 3 * l), scratch: scratch)
            Linear.forward(out: branch, x: s.atty.operand(A), weight: W[w.attnProjWeight],
                           bias: P + w.attnProjBias, rows: n, inFeatures: a, outFeatures: d)
            rampBranch(branch, count: n * d, layer: l)
            dropouts.addResidual(out: A + s.residual2, x: x, branch: branch, count: n * d, site: 2 + 3 * l)
            LayerNorm.forward(out: s.ln2.output(A), mean: A + s.ln2Mean, rstd: A + s.ln2Rstd,
                              x: A + s.residual2, weight: P + w.ln2Weight, bias: P + w.ln2Bias,
                              rows: n, width: d, epsilon: c.layerNormEpsilon, affine: affine, mask: norm)
            Linear.forward(out: A + s.fcPre, x: s.ln2.operand(A), weight: W[w.fcWeight], bias: P + w.fcBias,
                           rows: n, inFeatures: d, outFeatures: f)
            GELU.forward(out: s.fcPost.output(A), x: A + s.fcPre, rows: n, width: f, mask: ramp?.ffnMask)
            Linear.forward(out: branch, x: s.fcPost.operand(A), weight: W[w.fcProjWeight],
                           bias: P + w.fcProjBias, rows: n, inFeatures: f, outFeatures: d)
            rampBranch(branch, count: n * d, layer: l)
            dropouts.addResidual(out: A + acts.residual[l + 1], x: A + s.residual2, branch: branch,
                        count: n * d, site: 3 + 3 * l)
        }

        settleArrivals()
        LayerNorm.forward(out: acts.lnf.output(A), mean: A + acts.lnfMean, rstd: A + acts.lnfRstd,
                          x: A + acts.residual[c.layers], weight: P + layout.finalNormWeight,
                          bias: P + layout.finalNormBias, rows: n, width: d, epsilon: c.layerNormEpsilon, affine: affine,
                          mask: norm)
        // Head: logits = lnf wte^T (tied).
        Linear.forward(out: A + acts.logits, x: acts.lnf.operand(A), weight: W[layout.tokenEmbedding], bias: nil,
                       rows: n, inFeatures: d, outFeatures: v)
        guard inputTargets != nil else { return 0 }
        // Per-row losses go to the (not yet used) dNorm scratch.
        let (sum, counted) = CrossEntropy.forward(
            losses: A + acts.dNorm, logSumExp: A + acts.logSumExp, logits: A + acts.logits,
            targets: targets.pointer, rows: n, vocab: v)
        lastCounted = counted
        lastLoss = counted > 0 ? sum / Double(counted) : 0
        return Float(lastLoss)
    }

    public var logitRowCount: Int { lastBatch * lastSeq }
    public var logitRowTargets: UnsafePointer<Int32> { UnsafePointer(targets.pointer) }

    /// Adds d(loss)/d(parameters) into `gradients`: the last forward's mean loss, or the loss
    /// whose logit gradient `headGradient` writes (`LanguageModel.backward(headGradient:)`).
    /// Tells `observer` which parameters' gradients are final as it goes: the token embedding
    /// after the head (when the observer takes the lookup's gradient), the final norm, the blocks
    /// from the last to the first (each tensor of a block as soon as it is final), then the
    /// embeddings.
    public func backward(headGradient: ((UnsafeMutablePointer<Float>) -> Void)?, observer: GradientObserver?) {
        guard let acts, lastHadTargets else { preconditionFailure("backward without a forward pass with targets") }
        let c = config, b = lastBatch, t = lastSeq, n = b * t
        let d = c.width, a = c.attentionWidth, f = c.ffn, v = c.vocab
        let P = storage.pointer, G = gradients.pointer, A = actBuffer.pointer
        let W = weights(refreshing: false)
        let affine = c.normalization == .affine, ramp = self.ramp, norm = ramp?.norm
        let shape = Attention.Shape(batch: b, seq: t, heads: c.heads, headDim: c.headDim)
        let scratch = A + acts.block.attentionScratch
        let dResidual = A + acts.dResidual, dNorm = A + acts.dNorm
        // Under bf16 each layer's output gradient is converted for its products (the logits' in place).
        let copy = Linear.GradientCopy.scratch(acts.block.doutCopy, in: A)
        // [gradient observer] The observer may take the token lookup's gradient (tied embedding).
        let tokenGradient = observer?.takeTokenEmbeddingGradient(
            tokens: tokens.pointer, count: n, rows: v, width: d, offset: layout.tokenEmbedding)

        // Head: logits = lnf wte^T.
        // Under bf16 the logits' gradient is converted in place, by the cross-entropy itself.
        var logitsCopy: Linear.GradientCopy = precision == .bf16 ? .inPlace : .none
        let scale: Float = lastCounted > 0 ? 1 / Float(lastCounted) : 0
        if let headGradient {
            headGradient(A + acts.logits)
        } else {
            CrossEntropy.backward(logits: A + acts.logits, logSumExp: A + acts.logSumExp, targets: targets.pointer,
                                  rows: n, vocab: v, scale: scale, bf16InPlace: precision == .bf16)
            if precision == .bf16 { logitsCopy = .convertedInPlace }
        }
        Linear.backward(dx: dNorm, dweight: G + layout.tokenEmbedding, dbias: nil, dout: A + acts.logits,
                        x: acts.lnf.operand(A), weight: W[layout.tokenEmbedding], rows: n, inFeatures: d, outFeatures: v,
                        doutCopy: logitsCopy) { [layout] in
            // [gradient observer] wte's range is final before the head's input gradient is computed.
            if tokenGradient != nil { observer?.gradientsFinal(layout.tokenEmbedding..<layout.positionEmbedding) }
        }
        dResidual.update(repeating: 0, count: n * d)
        LayerNorm.backward(dx: dResidual, dweight: G + layout.finalNormWeight, dbias: G + layout.finalNormBias,
                           dout: dNorm, x: A + acts.residual[c.layers], weight: P + layout.finalNormWeight,
                           mean: A + acts.lnfMean, rstd: A + acts.lnfRstd, rows: n, width: d, affine: affine, mask: norm)
        observer?.gradientsFinal(layout.finalNormWeight..<layout.parameterCount)  // [gradient observer]

        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let w = layout.blocks[l], s = acts.layers[l]
            // [gradient observer] Block l's parameters end where block l + 1's (or the final norm's)
            // begin; each tensor is reported as soon as it is final (a product's weight and bias
            // before its input gradient), so the exchange of a block starts inside it.
            let blockEnd = l + 1 < c.layers ? layout.blocks[l + 1].ln1Weight : layout.finalNormWeight
            // MLP branch: residual[l+1] = residual2 + dropout(fcProj(gelu(fc(ln2(residual2)))))
            var dBranch = rampedBranchGradient(dropouts.branchGradient(dResidual, count: n * d, site: 3 + 3 * l),
                                               count: n * d, layer: l)
            Linear.backward(dx: A + acts.block.dFC, dweight: G + w.fcProjWeight, dbias: G + w.fcProjBias,
                            dout: dBranch, x: s.fcPost.operand(A), weight: W[w.fcProjWeight],
                            rows: n, inFeatures: f, outFeatures: d, doutCopy: copy) {
                observer?.gradientsFinal(w.fcProjWeight..<blockEnd)
            }
            ramp?.scaleNewUnits(A + acts.block.dFC, rows: n, ffn: f)
            GELU.backward(dx: A + acts.block.dFC, dout: A + acts.block.dFC, x: A + s.fcPre, count: n * f)
            Linear.backward(dx: dNorm, dweight: G + w.fcWeight, dbias: G + w.fcBias, dout: A + acts.block.dFC,
                            x: s.ln2.operand(A), weight: W[w.fcWeight], rows: n, inFeatures: d, outFeatures: f,
                            doutCopy: copy) {
                observer?.gradientsFinal(w.fcWeight..<w.fcProjWeight)
            }
            LayerNorm.backward(dx: dResidual, dweight: G + w.ln2Weight, dbias: G + w.ln2Bias, dout: dNorm,
                               x: A + s.residual2, weight: P + w.ln2Weight, mean: A + s.ln2Mean,
                               rstd: A + s.ln2Rstd, rows: n, width: d, affine: affine, mask: norm)
            observer?.gradientsFinal(w.ln2Weight..<w.fcWeight)
            // Attention branch: residual2 = residual[l] + dropout(proj(attention(qkv(ln1(residual[l])))))
            dBranch = rampedBranchGradient(dropouts.branchGradient(dResidual, count: n * d, site: 2 + 3 * l),
                                           count: n * d, layer: l)
            Linear.backward(dx: A + acts.block.dAtty, dweight: G + w.attnProjWeight, dbias: G + w.attnProjBias,
                            dout: dBranch, x: s.atty.operand(A), weight: W[w.attnProjWeight],
                            rows: n, inFeatures: a, outFeatures: d, doutCopy: copy) {
                observer?.gradientsFinal(w.attnProjWeight..<w.ln2Weight)
            }
            Attention.backward(dqkv: A + acts.block.dQKV, dout: A + acts.block.dAtty, qkv: s.qkv.operand(A), att: A + s.att,
                               shape: shape, mask: .causal, dropout: dropouts.at(site: 1 + 3 * l), scratch: scratch)
            ramp?.scaleNewValues(A + acts.block.dQKV, rows: n, attentionWidth: a)
            Linear.backward(dx: dNorm, dweight: G + w.qkvWeight, dbias: G + w.qkvBias, dout: A + acts.block.dQKV,
                            x: s.ln1.operand(A), weight: W[w.qkvWeight], rows: n, inFeatures: d, outFeatures: 3 * a,
                            doutCopy: copy) {
                observer?.gradientsFinal(w.qkvWeight..<w.attnProjWeight)
            }
            LayerNorm.backward(dx: dResidual, dweight: G + w.ln1Weight, dbias: G + w.ln1Bias, dout: dNorm,
                               x: A + acts.residual[l], weight: P + w.ln1Weight, mean: A + s.ln1Mean,
                               rstd: A + s.ln1Rstd, rows: n, width: d, affine: affine, mask: norm)
            observer?.gradientsFinal(w.ln1Weight..<w.qkvWeight)
        }
        let dEmbedding = dropouts.branchGradient(dResidual, count: n * d, site: 0)
        ramp?.scaleNewDimensions(dEmbedding, rows: n)
        Embedding.backward(dwte: tokenGradient?.gradient ?? G + layout.tokenEmbedding, dwpe: G + layout.positionEmbedding,
                           dout: dEmbedding, tokens: tokenGradient?.rows ?? UnsafePointer(tokens.pointer), batch: b, seq: t, width: d)
        // [gradient observer]
        observer?.gradientsFinal((tokenGradient == nil ? layout.tokenEmbedding : layout.positionEmbedding)..<layout.blocks[0].ln1Weight)
        lastHadTargets = false  // the logits now hold gradients
    }

    // MARK: helpers

    override func allocatePositionBuffers(_ positions: Int) { targets = Buffer<Int32>(count: positions) }
}
