/// Declares an architecture's parameter tensors in buffer order, from four kinds of tensor
/// (embedding, norm, linear layer, bias), each with what every consumer needs: its offset,
/// initial value, weight decay, growth role and Hugging Face entries. A layout's `init` is one
/// call per tensor (`GPTLayout`, `BERTLayout`).
///
/// Inside `beginBlock(l)` ... `endBlocks()` names get the prefix `blocks.l.` and the tensors
/// belong to block l for growth; Hugging Face names always get the current `huggingFacePrefix`.
struct ParameterTable {
    /// How the Hugging Face class stores one linear layer's weight and bias.
    enum HFLinear {
        /// `nn.Linear` entries NAME.weight and NAME.bias, `[out, in]` like elle.
        case linear(String)
        /// GPT-2's `Conv1D`: NAME.weight stored transposed (`[in, out]`), NAME.bias.
        case conv1D(String)
        /// Several `nn.Linear`s whose outputs elle fuses, in order, equal row blocks each
        /// (BERT's query, key and value as elle's `attn.qkv`).
        case rowBlocks([String])
    }

    private var carver = Carver()
    private(set) var tensors: [TensorDeclaration] = []
    private var layer: Int?
    private var huggingFacePrefix: String

    init(huggingFacePrefix: String) { self.huggingFacePrefix = huggingFacePrefix }

    var parameterCount: Int { carver.count }

    /// The following tensors belong to block `l`.
    mutating func beginBlock(_ l: Int, huggingFacePrefix prefix: String) {
        layer = l
        huggingFacePrefix = prefix
    }

    /// The following tensors are outside the blocks.
    mutating func endBlocks(huggingFacePrefix prefix: String) {
        layer = nil
        huggingFacePrefix = prefix
    }

    /// A [rows, width] lookup table (token or position embedding): columns follow the residual
    /// stream, rows are fixed; N(0, 0.02), decayed. HF entry `huggingFacePrefix + hf`.
    mutating func embedding(_ name: String, rows: Int, width: Int, huggingFace hf: String, tokenRows: Bool = false) -> Int {
        add(name, [rows, width], .normal(std: 0.02), .embedding, huggingFace: hf, tokenRows: tokenRows)
    }

    /// A norm's gain (1) and bias (0) over the residual stream: role `.norm`, or `.outputNorm` for
    /// the last norm before the tied output embedding. HF entries `hf.weight` and `hf.bias`.
    mutating func norm(_ name: String, width: Int, role: TensorRole = .norm, huggingFace hf: String) -> (weight: Int, bias: Int) {
        (add(name + ".weight", [width], .constant(1), role, huggingFace: hf + ".weight"),
         add(name + ".bias", [width], .constant(0), role, huggingFace: hf + ".bias"))
    }

    /// A linear layer y = x W^T + b: weight [out, in] ~ N(0, std) (decayed), bias [out] = 0.
    /// `writesResidualBranch`: its output is added to the residual stream (an identity block
    /// inserted by depth growth zeroes it).
    mutating func linear(
        _ name: String, out: (axis: TensorRole.Axis, size: Int), in input: (axis: TensorRole.Axis, size: Int),
        std: Double = 0.02, writesResidualBranch: Bool = false, huggingFace hf: HFLinear
    ) -> (weight: Int, bias: Int) {
        (add(name + ".weight", [out.size, input.size], .normal(std: std), .weight(out: out.axis, in: input.axis),
             writesResidualBranch: writesResidualBranch, huggingFace: hf.entries("weight", rows: out.size), transposed: hf.isConv1D),
         add(name + ".bias", [out.size], .constant(0), .bias(out.axis),
             writesResidualBranch: writesResidualBranch, huggingFace: hf.entries("bias", rows: out.size)))
    }

    /// A bias [count] = 0 with no weight of its own (BERT's output bias over the vocabulary).
    mutating func bias(_ name: String, _ axis: TensorRole.Axis, count: Int, huggingFace hf: String, tokenRows: Bool = false) -> Int {
        add(name, [count], .constant(0), .bias(axis), huggingFace: hf, tokenRows: tokenRows)
    }

    private mutating func add(
        _ name: String, _ shape: [Int], _ initial: InitialValue, _ role: TensorRole, writesResidualBranch: Bool = false,
        huggingFace hf: String, tokenRows: Bool = false
    ) -> Int {
        add(name, shape, initial, role, huggingFace: [(hf, nil)], tokenRows: tokenRows)
    }

    /// Carves the tensor and records its declaration; `hf` lists its Hugging Face entries, each
    /// the whole tensor (rows nil) or a block of its rows.
    private mutating func add(
        _ name: String, _ shape: [Int], _ initial: InitialValue, _ role: TensorRole, writesResidualBranch: Bool = false,
        huggingFace hf: [(name: String, rows: Range<Int>?)], transposed: Bool = false, tokenRows: Bool = false
    ) -> Int {
        let decays: Bool
        switch role {
        case .embedding, .weight: decays = true
        case .norm, .outputNorm, .bias: decays = false
        }
        let fullName = layer.map { "blocks.\($0)." + name } ?? name
        let offset = carver.take(fullName, shape, decays: decays)
        tensors.append(TensorDeclaration(
            spec: carver.tensors.last!, initial: initial,
            growth: TensorGrowthInfo(role: role, layer: layer, writesResidualBranch: writesResidualBranch),
            huggingFace: hf.map { entry in
                HFTensorName(elle: fullName, hf: huggingFacePrefix + entry.name, transposed: transposed, tokenRows: tokenRows,
                             shape: entry.rows.map { [$0.count] + shape.dropFirst() } ?? shape, rows: entry.rows)
            }))
        return offset
    }
}

extension ParameterTable.HFLinear {
    var isConv1D: Bool {
        if case .conv1D = self { return true }
        return false
    }

    /// The entries of the weight or the bias (`part`) of a layer with `rows` outputs.
    func entries(_ part: String, rows: Int) -> [(name: String, rows: Range<Int>?)] {
        switch self {
        case .linear(let name), .conv1D(let name): return [(name + "." + part, nil)]
        case .rowBlocks(let names):
            let block = rows / names.count
            return names.enumerated().map { k, name in (name + "." + part, (k * block)..<((k + 1) * block)) }
        }
    }
}
