import Tensors

/// One named tensor inside a flat buffer.
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var offset: Int
    /// Whether AdamW applies weight decay (matrices and embeddings yes; biases and norms no).
    public var decays: Bool
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }

    public init(name: String, shape: [Int], offset: Int, decays: Bool) {
        self.name = name
        self.shape = shape
        self.offset = offset
        self.decays = decays
    }
}

/// Hands out consecutive offsets in a flat buffer and records what each one is.
struct Carver {
    private(set) var tensors: [TensorSpec] = []
    private(set) var count = 0

    mutating func take(_ name: String, _ shape: [Int], decays: Bool = false) -> Int {
        let spec = TensorSpec(name: name, shape: shape, offset: count, decays: decays)
        tensors.append(spec)
        count += spec.count
        return spec.offset
    }
}

/// Where every GPT parameter lives in the flat parameter buffer (gradients and Adam moments use
/// the same layout). Weights are stored [out, in] (y = x W^T + b).
///
/// Order: embeddings, then blocks 0..<L, then the final norm. Backward finishes them in reverse,
/// so gradients become final from the end of the buffer towards its start.
public struct GPTLayout: Sendable {
    public struct Block: Sendable {
        public var ln1Weight, ln1Bias: Int          // (D), (D)
        public var qkvWeight, qkvBias: Int          // (3A, D), (3A)
        public var attnProjWeight, attnProjBias: Int // (D, A), (D)
        public var ln2Weight, ln2Bias: Int          // (D), (D)
        public var fcWeight, fcBias: Int            // (F, D), (F)
        public var fcProjWeight, fcProjBias: Int    // (D, F), (D)
    }

    public let tokenEmbedding: Int     // (V, D), also the output projection (tied)
    public let positionEmbedding: Int  // (context, D)
    public let blocks: [Block]
    public let finalNormWeight, finalNormBias: Int // (D), (D)
    public let tensors: [TensorSpec]
    public let parameterCount: Int

    public init(config c: ModelConfig) {
        let d = c.width, a = c.attentionWidth, f = c.ffn
        var carve = Carver()
        tokenEmbedding = carve.take("wte", [c.vocab, d], decays: true)
        positionEmbedding = carve.take("wpe", [c.context, d], decays: true)
        var blocks: [Block] = []
        for l in 0..<c.layers {
            let p = "blocks.\(l)."
            blocks.append(Block(
                ln1Weight: carve.take(p + "ln1.weight", [d]),
                ln1Bias: carve.take(p + "ln1.bias", [d]),
                qkvWeight: carve.take(p + "attn.qkv.weight", [3 * a, d], decays: true),
                qkvBias: carve.take(p + "attn.qkv.bias", [3 * a]),
                attnProjWeight: carve.take(p + "attn.proj.weight", [d, a], decays: true),
                attnProjBias: carve.take(p + "attn.proj.bias", [d]),
                ln2Weight: carve.take(p + "ln2.weight", [d]),
                ln2Bias: carve.take(p + "ln2.bias", [d]),
                fcWeight: carve.take(p + "mlp.fc.weight", [f, d], decays: true),
                fcBias: carve.take(p + "mlp.fc.bias", [f]),
                fcProjWeight: carve.take(p + "mlp.proj.weight", [d, f], decays: true),
                fcProjBias: carve.take(p + "mlp.proj.bias", [d])))
        }
        self.blocks = blocks
        finalNormWeight = carve.take("lnf.weight", [d])
        finalNormBias = carve.take("lnf.bias", [d])
        tensors = carve.tensors
        parameterCount = carve.count
    }

    public func tensor(named name: String) -> TensorSpec? { tensors.first { $0.name == name } }
}

/// Where every activation of one forward pass lives, for a batch of B sequences of length T.
/// Saved for backward: residual streams, norm outputs and statistics, qkv, attention
/// probabilities, attention output, MLP pre- and post-activation, logits. Backward scratch is
/// shared by all layers. Under bf16 the activations only products read (norm outputs, qkv,
/// attention output, GELU output) are kept as bf16 alone (`OperandSlot`).
struct GPTActivations {
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

    let batch: Int, seq: Int, threads: Int, precision: Precision
    /// residual[l] is the input of block l; residual[L] feeds the final norm. (BT, D) each.
    let residual: [Int]
    let layers: [Layer]
    let lnf: OperandSlot               // (BT, D)
    let lnfMean, lnfRstd: Int          // (BT), (BT)
    let logits: Int                    // (BT, V); overwritten by dlogits in backward
    let logSumExp: Int                 // (BT)
    // Scratch shared across layers.
    let branch: Int                    // (BT, D) attention/MLP branch output, or its gradient
    let dResidual: Int                 // (BT, D)
    let dNorm: Int                     // (BT, D)
    let dQKV: Int                      // (BT, 3A)
    let dAtty: Int                     // (BT, A)
    let dFC: Int                       // (BT, F)
    /// Under bf16: the qkv product before attention converts it (BT, 3A), and the bf16 copy of a
    /// layer's output gradient for its backward products (BT, max(3A, F)).
    let qkvFloat: Int?
    let doutCopy: Int?
    let attentionScratch: Int          // (threads, Attention.scratchPerThread)
    let count: Int

    init(config c: ModelConfig, batch b: Int, seq t: Int, threads: Int, precision: Precision) {
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
        dQKV = carve.take("dqkv", [n, 3 * a])
        dAtty = carve.take("datty", [n, a])
        dFC = carve.take("dfc", [n, f])
        qkvFloat = precision == .bf16 ? carve.take("qkv.float", [n, 3 * a]) : nil
        doutCopy = precision == .bf16 ? carve.takeHalves("dout.bf16", n * max(3 * a, f, d)) : nil
        attentionScratch = carve.take("attention.scratch",
                                      [threads, Attention.scratchPerThread(seq: t, headDim: c.headDim, precision: precision)])
        count = carve.count
    }
}
