/// What growth needs to know about a parameter tensor: which index map each axis follows and
/// where divisions go. The rules are written once per role (below); an architecture only says
/// which role each of its tensors plays where it declares the tensor (`ParameterTable`), so BERT
/// plugs in by declaring its tensors, with its MLM-head norm as the `outputNorm`.
///
/// With W[out, in] and y = W x + b, a grown entry is the source entry its indices map to, times:
/// - value: 1 / c(column's source) for a weight's input columns (the copies' contributions sum
///   to the original one), 1 / c(g(i)) for the output norm (the tied embedding is read
///   undivided, so the division happens once, here); 1 otherwise.
/// - gradient (and Adam's first moment; the second by the square): 1 / c(output's source), where
///   the output is the value the tensor writes: a weight's or bias's row, an embedding's column,
///   a norm's element. Every such value is read downstream through divided columns, so its
///   gradient, and the gradient of whatever produced it, is the source's over its copy count.
///   The output norm is the exception: its output meets the undivided embedding, so its gradient
///   is the source's unchanged. A divided column keeps its gradient.
public enum TensorRole: Equatable, Sendable {
    /// Which unit map an axis follows.
    public enum Axis: Equatable, Sendable {
        /// Not grown (vocabulary, positions).
        case fixed
        /// The residual stream, through the global map g.
        case residual
        /// The attention width, whole heads through the layer's head map.
        case attention
        /// Query, key and value blocks of the fused projection, each through the head map.
        case qkv
        /// The MLP hidden units, through the layer's FFN map.
        case ffn
    }

    /// [rows, residual] lookup table (token, position, domain-prompt embeddings): columns copied.
    case embedding
    /// [residual] gain or bias of a norm that feeds divided columns: copied.
    case norm
    /// [residual] gain or bias of the last norm before a tied output embedding: copied and
    /// divided by c(g(i)).
    case outputNorm
    /// [out, in] weight: rows follow `out`, columns follow `in` and are divided by their counts.
    case weight(out: Axis, in: Axis)
    /// [out] bias: follows `out`.
    case bias(Axis)
}

/// A tensor's role, its block (nil for tensors outside the blocks), and whether it writes a
/// residual branch (zeroed in an inserted identity block).
public struct TensorGrowthInfo: Equatable, Sendable {
    public var role: TensorRole
    public var layer: Int?
    public var writesResidualBranch: Bool
}

extension ModelConfig {
    /// The growth role of every parameter tensor of this architecture, in layout order.
    public func growthRoles() -> [TensorGrowthInfo] { layout.growthRoles }
}
