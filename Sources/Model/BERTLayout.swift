import Tensors

/// Where every BERT parameter lives in the flat parameter buffer (gradients and Adam moments use
/// the same layout), declared with what each tensor is (`ModelLayout`). Weights are stored
/// [out, in] (y = x W^T + b); Hugging Face names are `BertForMaskedLM`'s.
///
/// Order: embeddings and their norm, blocks 0..<L (each in forward order: attention, post-norm
/// `ln1`, MLP, post-norm `ln2`), then the MLM head (dense, GELU, norm, projection tied to `wte`,
/// output bias). For growth the encoder norms are `norm`, the head's dense layer maps the residual
/// stream to itself, and the head's norm is the `outputNorm`, where the tied embedding's division
/// goes (docs/GROWTH.md).
public struct BERTLayout: ModelLayout {
    public struct Block: Sendable {
        public var qkvWeight, qkvBias: Int          // (3A, D), (3A)
        public var attnProjWeight, attnProjBias: Int // (D, A), (D)
        public var ln1Weight, ln1Bias: Int          // (D), (D): LN(x + attention)
        public var fcWeight, fcBias: Int            // (F, D), (F)
        public var fcProjWeight, fcProjBias: Int    // (D, F), (D)
        public var ln2Weight, ln2Bias: Int          // (D), (D): LN(x + MLP)
    }

    public static let architecture = Architecture.bert
    public let tokenEmbedding: Int        // (V, D), also the MLM output projection (tied)
    public let positionEmbedding: Int     // (context, D)
    public let embeddingNormWeight, embeddingNormBias: Int // (D), (D)
    public let blocks: [Block]
    public let headDenseWeight, headDenseBias: Int  // (D, D), (D)
    public let headNormWeight, headNormBias: Int    // (D), (D): the last norm before the tied projection
    public let outputBias: Int                      // (V)
    public let declarations: [TensorDeclaration]
    public let tensors: [TensorSpec]
    public let parameterCount: Int

    public init(config c: ModelConfig) {
        let d = c.width, a = c.attentionWidth, f = c.ffn
        var table = ParameterTable(huggingFacePrefix: "bert.embeddings.")
        tokenEmbedding = table.embedding("wte", rows: c.vocab, width: d, huggingFace: "word_embeddings.weight", tokenRows: true)
        positionEmbedding = table.embedding("wpe", rows: c.context, width: d, huggingFace: "position_embeddings.weight")
        (embeddingNormWeight, embeddingNormBias) = table.norm("emb_ln", width: d, huggingFace: "LayerNorm")
        var blocks: [Block] = []
        for l in 0..<c.layers {
            table.beginBlock(l, huggingFacePrefix: "bert.encoder.layer.\(l).")
            // q, k, v stacked in that order, heads contiguous in each: as BERT's three Linears.
            let qkv = table.linear("attn.qkv", out: (.qkv, 3 * a), in: (.residual, d),
                                   huggingFace: .rowBlocks(["attention.self.query", "attention.self.key", "attention.self.value"]))
            // The branch outputs an identity block zeroes (not exact here: see docs/GROWTH.md).
            let proj = table.linear("attn.proj", out: (.residual, d), in: (.attention, a),
                                    writesResidualBranch: true, huggingFace: .linear("attention.output.dense"))
            let ln1 = table.norm("ln1", width: d, huggingFace: "attention.output.LayerNorm")
            let fc = table.linear("mlp.fc", out: (.ffn, f), in: (.residual, d), huggingFace: .linear("intermediate.dense"))
            let fcProj = table.linear("mlp.proj", out: (.residual, d), in: (.ffn, f),
                                      writesResidualBranch: true, huggingFace: .linear("output.dense"))
            let ln2 = table.norm("ln2", width: d, huggingFace: "output.LayerNorm")
            blocks.append(Block(qkvWeight: qkv.weight, qkvBias: qkv.bias, attnProjWeight: proj.weight, attnProjBias: proj.bias,
                                ln1Weight: ln1.weight, ln1Bias: ln1.bias, fcWeight: fc.weight, fcBias: fc.bias,
                                fcProjWeight: fcProj.weight, fcProjBias: fcProj.bias, ln2Weight: ln2.weight, ln2Bias: ln2.bias))
        }
        self.blocks = blocks
        table.endBlocks(huggingFacePrefix: "cls.predictions.")
        (headDenseWeight, headDenseBias) = table.linear("head.dense", out: (.residual, d), in: (.residual, d),
                                                        huggingFace: .linear("transform.dense"))
        (headNormWeight, headNormBias) = table.norm("head.ln", width: d, role: .outputNorm, huggingFace: "transform.LayerNorm")
        outputBias = table.bias("head.bias", .fixed, count: c.vocab, huggingFace: "bias", tokenRows: true)
        declarations = table.tensors
        tensors = table.tensors.map(\.spec)
        parameterCount = table.parameterCount
    }
}

/// Where every activation of one BERT forward pass lives, for B sequences of length T (N = B T).
/// The head buffers have N rows: the head runs on the M <= N predicted positions, and so does the
/// last block after its attention when M < N (its per-position buffers then hold M rows).
/// Under bf16 what only products read (qkv, attention output, GELU output, the head's norm) is
/// kept as bf16 alone, and what both products and float32 kernels read (block outputs, ln1's
/// output) in both (`OperandSlot`).
public struct BERTActivations {
    struct Layer {
        var qkv: OperandSlot                // (N, 3A); under bf16 the bf16 copy attention makes
        var att: Int                        // (B, H, T, T) softmax probabilities
        var atty: OperandSlot               // (N, A) attention output before projection
        var residual1: Int                  // (N, D) x + attention branch: the input of ln1
        var ln1Mean, ln1Rstd: Int           // (N), (N)
        var hidden: OperandSlot             // (N, D) ln1's output
        var fcPre: Int                      // (N, F) before GELU
        var fcPost: OperandSlot             // (N, F) after GELU
        var residual2: Int                  // (N, D) hidden + MLP branch: the input of ln2
        var ln2Mean, ln2Rstd: Int           // (N), (N)
    }

    public let batch: Int, seq: Int, threads: Int, precision: Precision
    let embeddingSum: Int                   // (N, D) wte[token] + wpe[position]
    let embeddingMean, embeddingRstd: Int   // (N), (N)
    /// output[0] is the (dropped-out) embedding norm's output; output[l + 1] block l's (its ln2). (N, D)
    /// When the last block is pruned, output[L] holds its M predicted rows, in order.
    let output: [OperandSlot]
    let layers: [Layer]
    let keyMask: Int                        // (N) 1 = a real token, 0 = padding
    /// The last block's input and attention output at the predicted rows, when it runs only there.
    let prunedInput: Int                    // (N, D)
    let prunedAtty: OperandSlot             // (N, A)
    // MLM head on the predicted rows (the first M rows of output[L]).
    let headPre, headPost: Int              // (N, D) dense output before and after GELU
    let headNorm: OperandSlot               // (N, D) read by the output projection
    let headMean, headRstd: Int             // (N), (N)
    public let logits: Int                  // (N, V); overwritten by dlogits in backward
    let logSumExp, losses: Int              // (N), (N)
    // Scratch shared across layers.
    public let branch: Int                  // (N, D) a branch output, or its gradient
    let dOutput: Int                        // (N, D) gradient of a block's output
    let dResidual: Int                      // (N, D) gradient of a norm's input
    /// (N, D) the skip path's gradient of a block a masked ramp inserted (empty without such blocks).
    let rampSkip: Int
    let block: BlockScratch
    public let count: Int

    public init(config c: ModelConfig, batch b: Int, seq t: Int, threads: Int, precision: Precision) {
        let n = b * t, d = c.width, a = c.attentionWidth, f = c.ffn
        batch = b; seq = t; self.threads = threads; self.precision = precision
        var carve = Carver()
        embeddingSum = carve.take("embedding.sum", [n, d])
        embeddingMean = carve.take("embedding.mean", [n])
        embeddingRstd = carve.take("embedding.rstd", [n])
        var output = [carve.takeOperand("output.0", [n, d], precision: precision, keepFloat: true)]
        var layers: [Layer] = []
        for l in 0..<c.layers {
            layers.append(Layer(
                qkv: carve.takeOperand("qkv", [n, 3 * a], precision: precision),
                att: carve.take("att", [b, c.heads, t, t]),
                atty: carve.takeOperand("atty", [n, a], precision: precision),
                residual1: carve.take("residual1", [n, d]),
                ln1Mean: carve.take("ln1.mean", [n]), ln1Rstd: carve.take("ln1.rstd", [n]),
                hidden: carve.takeOperand("hidden", [n, d], precision: precision, keepFloat: true),
                fcPre: carve.take("fc.pre", [n, f]), fcPost: carve.takeOperand("fc.post", [n, f], precision: precision),
                residual2: carve.take("residual2", [n, d]),
                ln2Mean: carve.take("ln2.mean", [n]), ln2Rstd: carve.take("ln2.rstd", [n])))
            output.append(carve.takeOperand("output.\(l + 1)", [n, d], precision: precision, keepFloat: true))
        }
        self.output = output
        self.layers = layers
        keyMask = carve.take("key.mask", [n])
        prunedInput = carve.take("pruned.input", [n, d])
        prunedAtty = carve.takeOperand("pruned.atty", [n, a], precision: precision)
        headPre = carve.take("head.pre", [n, d])
        headPost = carve.take("head.post", [n, d])
        headNorm = carve.takeOperand("head.norm", [n, d], precision: precision)
        headMean = carve.take("head.mean", [n])
        headRstd = carve.take("head.rstd", [n])
        logits = carve.take("logits", [n, c.vocab])
        logSumExp = carve.take("lse", [n])
        losses = carve.take("losses", [n])
        branch = carve.take("branch", [n, d])
        dOutput = carve.take("doutput", [n, d])
        dResidual = carve.take("dresidual", [n, d])
        rampSkip = carve.take("ramp.skip", [c.ramp?.insertedLayers.isEmpty == false ? n : 0, d])
        block = BlockScratch(carving: &carve, rows: n, config: c, seq: t, threads: threads, precision: precision)
        count = carve.count
    }
}
