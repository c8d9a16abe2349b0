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
/// shared by all layers.
struct GPTActivations {
    struct Layer {
        var ln1, ln1Mean, ln1Rstd: Int  // (BT, D), (BT), (BT)
        var qkv: Int                    // (BT, 3A)
        var att: Int                    // (B, H, T, T) softmax probabilities
        var atty: Int                   // (BT, A) attention output before projection
        var residual2: Int              // (BT, D) after the attention branch
        var ln2, ln2Mean, ln2Rstd: Int  // (BT, D), (BT), (BT)
        var fcPre, fcPost: Int          // (BT, F) before and after GELU
    }

    let batch: Int, seq: Int, threads: Int
    /// residual[l] is the input of block l; residual[L] feeds the final norm. (BT, D) each.
    let residual: [Int]
    let layers: [Layer]
    let lnf, lnfMean, lnfRstd: Int     // (BT, D), (BT), (BT)
    let logits: Int                    // (BT, V); overwritten by dlogits in backward
    let logSumExp: Int                 // (BT)
    // Scratch shared across layers.
    let branch: Int                    // (BT, D) attention/MLP branch output, or its gradient
    let dResidual: Int                 // (BT, D)
    let dNorm: Int                     // (BT, D)
    let dQKV: Int                      // (BT, 3A)
    let dAtty: Int                     // (BT, A)
    let dFC: Int                       // (BT, F)
    let attentionScratch: Int          // (threads, 2, T, T)
    let count: Int

    init(config c: ModelConfig, batch b: Int, seq t: Int, threads: Int) {
        let n = b * t, d = c.width, a = c.attentionWidth, f = c.ffn
        batch = b; seq = t; self.threads = threads
        var carve = Carver()
        var residual = [carve.take("residual.0", [n, d])]
        var layers: [Layer] = []
        for l in 0..<c.layers {
            layers.append(Layer(
                ln1: carve.take("ln1", [n, d]), ln1Mean: carve.take("ln1.mean", [n]),
                ln1Rstd: carve.take("ln1.rstd", [n]),
                qkv: carve.take("qkv", [n, 3 * a]),
                att: carve.take("att", [b, c.heads, t, t]),
                atty: carve.take("atty", [n, a]),
                residual2: carve.take("residual2", [n, d]),
                ln2: carve.take("ln2", [n, d]), ln2Mean: carve.take("ln2.mean", [n]),
                ln2Rstd: carve.take("ln2.rstd", [n]),
                fcPre: carve.take("fc.pre", [n, f]), fcPost: carve.take("fc.post", [n, f])))
            residual.append(carve.take("residual.\(l + 1)", [n, d]))
        }
        self.residual = residual
        self.layers = layers
        lnf = carve.take("lnf", [n, d])
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
        attentionScratch = carve.take("attention.scratch", [threads, 2, t, t])
        count = carve.count
    }
}
