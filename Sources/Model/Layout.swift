import Tensors

/// Where every GPT parameter lives in the flat parameter buffer (gradients and Adam moments use
/// the same layout), declared with what each tensor is (`ModelLayout`). Weights are stored
/// [out, in] (y = x W^T + b); Hugging Face names are `GPT2LMHeadModel`'s.
///
/// Order: embeddings, then blocks 0..<L, then the final norm. Backward finishes them in reverse,
/// so gradients become final from the end of the buffer towards its start.
public struct GPTLayout: ModelLayout {
    public struct Block: Sendable {
        public var ln1Weight, ln1Bias: Int          // (D), (D)
        public var qkvWeight, qkvBias: Int          // (3A, D), (3A)
        public var attnProjWeight, attnProjBias: Int // (D, A), (D)
        public var ln2Weight, ln2Bias: Int          // (D), (D)
        public var fcWeight, fcBias: Int            // (F, D), (F)
        public var fcProjWeight, fcProjBias: Int    // (D, F), (D)
    }

    public static let architecture = Architecture.gpt
    public let tokenEmbedding: Int     // (V, D), also the output projection (tied)
    public let positionEmbedding: Int  // (context, D)
    public let blocks: [Block]
    public let finalNormWeight, finalNormBias: Int // (D), (D): the output norm
    public let declarations: [TensorDeclaration]
    public let tensors: [TensorSpec]
    public let parameterCount: Int

    public init(config c: ModelConfig) {
        let d = c.width, a = c.attentionWidth, f = c.ffn
        // GPT-2 draws the two projections that write the residual stream with std 0.02 / sqrt(2 L).
        let residualStd = 0.02 / (2 * Double(c.layers)).squareRoot()
        var table = ParameterTable(huggingFacePrefix: "transformer.")
        tokenEmbedding = table.embedding("wte", rows: c.vocab, width: d, huggingFace: "wte.weight", tokenRows: true)
        positionEmbedding = table.embedding("wpe", rows: c.context, width: d, huggingFace: "wpe.weight")
        var blocks: [Block] = []
        for l in 0..<c.layers {
            table.beginBlock(l, huggingFacePrefix: "transformer.h.\(l).")
            let ln1 = table.norm("ln1", width: d, huggingFace: "ln_1")
            let qkv = table.linear("attn.qkv", out: (.qkv, 3 * a), in: (.residual, d), huggingFace: .conv1D("attn.c_attn"))
            let proj = table.linear("attn.proj", out: (.residual, d), in: (.attention, a), std: residualStd,
                                    writesResidualBranch: true, huggingFace: .conv1D("attn.c_proj"))
            let ln2 = table.norm("ln2", width: d, huggingFace: "ln_2")
            let fc = table.linear("mlp.fc", out: (.ffn, f), in: (.residual, d), huggingFace: .conv1D("mlp.c_fc"))
            let fcProj = table.linear("mlp.proj", out: (.residual, d), in: (.ffn, f), std: residualStd,
                                      writesResidualBranch: true, huggingFace: .conv1D("mlp.c_proj"))
            blocks.append(Block(ln1Weight: ln1.weight, ln1Bias: ln1.bias, qkvWeight: qkv.weight, qkvBias: qkv.bias,
                                attnProjWeight: proj.weight, attnProjBias: proj.bias, ln2Weight: ln2.weight, ln2Bias: ln2.bias,
                                fcWeight: fc.weight, fcBias: fc.bias, fcProjWeight: fcProj.weight, fcProjBias: fcProj.bias))
        }
        self.blocks = blocks
        table.endBlocks(huggingFacePrefix: "transformer.")
        (finalNormWeight, finalNormBias) = table.norm("lnf", width: d, role: .outputNorm, huggingFace: "ln_f")
        declarations = table.tensors
        tensors = table.tensors.map(\.spec)
        parameterCount = table.parameterCount
    }
}

/// Where every activation of one forward pass lives, for a batch of B sequences of length T.
/// Saved for backward: residual streams, norm outputs and statistics, qkv, attention
/// probabilities, attention output, MLP pre- and post-activation, logits. Backward scratch is
/// shared by all layers. Under bf16 the activations only products read (norm outputs, qkv,
/// attention output, GELU output) are kept as bf16 alone (`OperandSlot`).
public struct GPTActivations {
    struct Layer {
        var ln1: OperandSlot            // (BT, D) read by the qkv product
        var ln1Mean, ln1Rstd: Int       // (BT), (BT)
        var qkv: OperandSlot            // (BT, 3A); under bf16 the bf16 copy attention makes
        var att: Int                    // (B, H, T, T) softmax probabilities
        var atty: OperandSlot           // (BT, A) attention output before projection
        var residual2: Int              // (BT, D) after the attention branch
        var ln2: OperandSlot            // (BT, D) read by the MLP's first product
        var ln2Mean, ln2Rstd: Int       // (BT), (BT)
        var fcPre: Int                  // (BT, F) before GELU
        var fcPost: OperandSlot         // (BT, F) after GELU
    }

    public let batch: Int, seq: Int, threads: Int, precision: Precision
    /// Floats in the whole activation buffer.
    public let count: Int
    /// residual[l] is the input of block l; residual[L] feeds the final norm. (BT, D) each.
    let residual: [Int]
    let layers: [Layer]
    let lnf: OperandSlot               // (BT, D)
    let lnfMean, lnfRstd: Int          // (BT), (BT)
    public let logits: Int             // (BT, V); overwritten by dlogits in backward
    let logSumExp: Int                 // (BT)
    // Scratch shared across layers.
    public let branch: Int             // (BT, D) attention/MLP branch output, or its gradient
    let dResidual: Int                 // (BT, D)
    let dNorm: Int                     // (BT, D)
    let block: BlockScratch

    public init(config c: ModelConfig, batch b: Int, seq t: Int, threads: Int, precision: Precision) {
        let n = b * t, d = c.width, a = c.attentionWidth, f = c.ffn
        batch = b; seq = t; self.threads = threads; self.precision = precision
        var carve = Carver()
        var residual = [carve.take("residual.0", [n, d])]
        var layers: [Layer] = []
        for l in 0..<c.layers {
            layers.append(Layer(
                ln1: carve.takeOperand("ln1", [n, d], precision: precision), ln1Mean: carve.take("ln1.mean", [n]),
                ln1Rstd: carve.take("ln1.rstd", [n]),
                qkv: carve.takeOperand("qkv", [n, 3 * a], precision: precision),
                att: carve.take("att", [b, c.heads, t, t]),
                atty: carve.takeOperand("atty", [n, a], precision: precision),
                residual2: carve.take("residual2", [n, d]),
                ln2: carve.takeOperand("ln2", [n, d], precision: precision), ln2Mean: carve.take("ln2.mean", [n]),
                ln2Rstd: carve.take("ln2.rstd", [n]),
                fcPre: carve.take("fc.pre", [n, f]), fcPost: carve.takeOperand("fc.post", [n, f], precision: precision)))
            residual.append(carve.take("residual.\(l + 1)", [n, d]))
        }
        self.residual = residual
        self.layers = layers
        lnf = carve.takeOperand("lnf", [n, d], precision: precision)
        lnfMean = carve.take("lnf.mean", [n])
        lnfRstd = carve.take("lnf.rstd", [n])
        logits = carve.take("logits", [n, c.vocab])
        logSumExp = carve.take("lse", [n])
        branch = carve.take("branch", [n, d])
        dResidual = carve.take("dresidual", [n, d])
        dNorm = carve.take("dnorm", [n, d])
        block = BlockScratch(carving: &carve, rows: n, config: c, seq: t, threads: threads, precision: precision)
        count = carve.count
    }
}
