/// The number format of the operands of matrix products. `bf16` is mixed precision: both operands
/// of every product are bfloat16, accumulation and results float32; master weights, gradients,
/// optimizer state, softmax, norms, losses and reductions stay float32.
public enum Precision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16
}

/// A matrix as a product reads it: float32 or bf16 values (row-major; the leading dimension is
/// passed beside it).
public enum Operand {
    case fp32(UnsafePointer<Float>)
    case bf16(UnsafePointer<BF16>)

    public var precision: Precision {
        switch self {
        case .fp32: return .fp32
        case .bf16: return .bf16
        }
    }

    /// The operand `offset` elements further on.
    @inlinable
    public static func + (lhs: Operand, offset: Int) -> Operand {
        switch lhs {
        case .fp32(let p): return .fp32(p + offset)
        case .bf16(let p): return .bf16(p + offset)
        }
    }
}

/// Where a kernel writes values that matrix products read: float32, bf16, or both (when float32
/// kernels read them too, as a residual stream does). Writing through this converts in the kernel
/// that produces the values, so no separate conversion pass reads them again.
public struct OperandOutput {
    public let fp32: UnsafeMutablePointer<Float>?
    public let bf16: UnsafeMutablePointer<BF16>?

    public init(fp32: UnsafeMutablePointer<Float>?, bf16: UnsafeMutablePointer<BF16>?) {
        precondition(fp32 != nil || bf16 != nil, "an operand output needs somewhere to write")
        self.fp32 = fp32
        self.bf16 = bf16
    }

    /// Float32 only.
    public static func float(_ p: UnsafeMutablePointer<Float>) -> OperandOutput { OperandOutput(fp32: p, bf16: nil) }

    /// What products read: the bf16 values when there are any.
    public var operand: Operand {
        if let bf16 { return .bf16(bf16) }
        return .fp32(fp32!)
    }

    @inlinable @inline(__always)
    public func store(_ v: Vec, at i: Int) {
        if let fp32 { storeVec(v, fp32 + i) }
        if let bf16 { storeBF16(v, bf16 + i) }
    }

    /// Stores the low `count` (< 16) lanes.
    @inlinable @inline(__always)
    public func storePartial(_ v: Vec, at i: Int, count: Int) {
        if let fp32 { Tensors.storePartial(v, fp32 + i, count) }
        if let bf16 { storePartialBF16(v, bf16 + i, count) }
    }

    /// Stores one value.
    @inlinable @inline(__always)
    public func store(_ x: Float, at i: Int) {
        if let fp32 { fp32[i] = x }
        if let bf16 { storePartialBF16(Vec(repeating: x), bf16 + i, 1) }
    }

    @inlinable
    public static func + (lhs: OperandOutput, offset: Int) -> OperandOutput {
        OperandOutput(fp32: lhs.fp32.map { $0 + offset }, bf16: lhs.bf16.map { $0 + offset })
    }
}
