import Tensors

/// Where every parameter of one architecture lives in the flat parameter buffer (gradients and
/// Adam moments use the same layout), and what each tensor is (`TensorDeclaration`). `GPTLayout`
/// and `BERTLayout` implement it by declaring their tensors once, in buffer order, through
/// `ParameterTable`; initialization, weight decay, growth roles and Hugging Face names all read
/// those declarations, so an architecture's tensors are listed in exactly one place. The typed
/// offsets each layout adds (`blocks[l].qkvWeight`...) are what its forward and backward passes use.
public protocol ModelLayout: Sendable {
    /// The architecture whose parameters this lays out.
    static var architecture: Architecture { get }
    init(config: ModelConfig)
    /// Every parameter tensor with its declaration, in buffer order.
    var declarations: [TensorDeclaration] { get }
    /// `declarations`' specs: name, shape, offset, whether AdamW decays it.
    var tensors: [TensorSpec] { get }
    var parameterCount: Int { get }
}

extension ModelLayout {
    public func tensor(named name: String) -> TensorSpec? { tensors.first { $0.name == name } }

    /// The growth role of every tensor, in buffer order (docs/GROWTH.md).
    public var growthRoles: [TensorGrowthInfo] { declarations.map(\.growth) }

    /// Every tensor's entries in the Hugging Face model class, in buffer order (docs/INTEROP.md).
    public var huggingFaceNames: [HFTensorName] { declarations.flatMap(\.huggingFace) }

    /// Fills `parameters` as a fresh model starts (`TensorDeclaration.initial`). Random tensors are
    /// filled in chunks of 64 Ki values, each from its own stream seeded by (seed, tensor index,
    /// chunk), so the result does not depend on the thread count.
    public func initialize(_ parameters: UnsafeMutablePointer<Float>, seed: UInt64) {
        for (index, tensor) in declarations.enumerated() {
            let p = parameters + tensor.spec.offset, count = tensor.spec.count
            switch tensor.initial {
            case .constant(let value):
                p.update(repeating: value, count: count)
            case .normal(let std):
                let chunk = 1 << 16
                Parallel.forRanges((count + chunk - 1) / chunk) { _, range in
                    for c in range {
                        var rng = Xoshiro256(seed: SplitMix64.mix(seed, UInt64(index), UInt64(c)))
                        for i in (c * chunk)..<min((c + 1) * chunk, count) {
                            p[i] = Float(rng.nextNormal() * std)
                        }
                    }
                }
            }
        }
    }
}

/// One parameter tensor as its architecture declares it.
public struct TensorDeclaration: Sendable {
    /// Name, shape, offset in the flat buffer, weight decay.
    public var spec: TensorSpec
    /// How a fresh model fills it.
    public var initial: InitialValue
    /// How growth maps it (docs/GROWTH.md).
    public var growth: TensorGrowthInfo
    /// Its entries in the Hugging Face model class's state dict (one, or BERT's query, key and
    /// value for elle's fused `attn.qkv`).
    public var huggingFace: [HFTensorName]
}

/// How a fresh model fills a parameter tensor.
public enum InitialValue: Equatable, Sendable {
    /// Every value the same (biases 0, norm gains 1).
    case constant(Float)
    /// Independent draws from N(0, std^2).
    case normal(std: Double)
}

/// One elle parameter tensor and the Hugging Face state-dict entry that holds it.
public struct HFTensorName: Equatable, Sendable {
    /// The tensor's name in elle's layout (`TensorSpec.name`).
    public var elle: String
    /// Its key in the Hugging Face model class's state dict.
    public var hf: String
    /// Stored transposed: GPT-2's `Conv1D` keeps weights `[in, out]` where elle keeps `[out, in]`.
    public var transposed: Bool
    /// Rows indexed by token id (embeddings, output biases): an import whose tokenizer adds or
    /// reorders special tokens moves these rows with the tokens.
    public var tokenRows: Bool
    /// Shape of the entry in elle's layout, and as the Hugging Face class stores it.
    public var shape: [Int]
    /// The entry holds only these rows (first dimension) of the elle tensor: BERT's query, key and
    /// value are three entries of elle's fused `attn.qkv`. Nil: the whole tensor.
    public var rows: Range<Int>? = nil
    public var hfShape: [Int] { transposed ? shape.reversed() : shape }
}

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

/// The scratch every block reuses in turn (one set for all layers, carved after the saved
/// activations): the gradients of a block's products, and under bf16 the float32 qkv product
/// before attention converts it and the bf16 copy of an output gradient the backward products read.
struct BlockScratch {
    let dQKV: Int                   // (rows, 3A)
    let dAtty: Int                  // (rows, A)
    let dFC: Int                    // (rows, F)
    let qkvFloat: Int?              // (rows, 3A), bf16 only
    let doutCopy: Int?              // (rows, max(3A, F, D)) bf16 values, bf16 only
    let attentionScratch: Int       // (threads, Attention.scratchPerThread)

    init(carving carve: inout Carver, rows n: Int, config c: ModelConfig, seq t: Int, threads: Int, precision: Precision) {
        let a = c.attentionWidth, f = c.ffn
        dQKV = carve.take("dqkv", [n, 3 * a])
        dAtty = carve.take("datty", [n, a])
        dFC = carve.take("dfc", [n, f])
        qkvFloat = precision == .bf16 ? carve.take("qkv.float", [n, 3 * a]) : nil
        doutCopy = precision == .bf16 ? carve.takeHalves("dout.bf16", n * max(3 * a, f, c.width)) : nil
        attentionScratch = carve.take("attention.scratch",
                                      [threads, Attention.scratchPerThread(seq: t, headDim: c.headDim, precision: precision)])
    }
}
