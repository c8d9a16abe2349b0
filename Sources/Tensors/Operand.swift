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
/// that produces the values, so no separate conversion pass reads them again. A kernel runs
/// through `run`, which specializes it for the one destination it has (`VectorSink`): a loop that
/// tested the destination at every store ran 2x slower.
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

    /// Runs `kernel` with the sink of this output.
    @inlinable
    public func run<K: SinkKernel>(_ kernel: K) {
        if let fp32, let bf16 {
            kernel.run(DualSink(fp32, bf16))
        } else if let fp32 {
            kernel.run(FloatSink(fp32))
        } else {
            kernel.run(BF16Sink(bf16!))
        }
    }

    @inlinable
    public static func + (lhs: OperandOutput, offset: Int) -> OperandOutput {
        OperandOutput(fp32: lhs.fp32.map { $0 + offset }, bf16: lhs.bf16.map { $0 + offset })
    }
}

/// A kernel generic over where it writes (`OperandOutput.run`).
public protocol SinkKernel {
    func run<Sink: VectorSink>(_ out: Sink)
}

/// A destination for a kernel's values, element i at a time or 16 from i on.
public protocol VectorSink {
    func store(_ v: Vec, at i: Int)
    /// The low `count` (< 16) lanes.
    func storePartial(_ v: Vec, at i: Int, count: Int)
    func store(_ x: Float, at i: Int)
}

public struct FloatSink: VectorSink {
    public let p: UnsafeMutablePointer<Float>
    @inlinable public init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
    @inlinable @inline(__always) public func store(_ v: Vec, at i: Int) { storeVec(v, p + i) }
    @inlinable @inline(__always) public func storePartial(_ v: Vec, at i: Int, count: Int) { Tensors.storePartial(v, p + i, count) }
    @inlinable @inline(__always) public func store(_ x: Float, at i: Int) { p[i] = x }
}

public struct BF16Sink: VectorSink {
    public let p: UnsafeMutablePointer<BF16>
    @inlinable public init(_ p: UnsafeMutablePointer<BF16>) { self.p = p }
    @inlinable @inline(__always) public func store(_ v: Vec, at i: Int) { storeBF16(v, p + i) }
    @inlinable @inline(__always) public func storePartial(_ v: Vec, at i: Int, count: Int) { storePartialBF16(v, p + i, count) }
    @inlinable @inline(__always) public func store(_ x: Float, at i: Int) { storePartialBF16(Vec(repeating: x), p + i, 1) }
}

public struct DualSink: VectorSink {
    public let float: FloatSink, half: BF16Sink
    @inlinable public init(_ f: UnsafeMutablePointer<Float>, _ h: UnsafeMutablePointer<BF16>) { float = FloatSink(f); half = BF16Sink(h) }
    @inlinable @inline(__always) public func store(_ v: Vec, at i: Int) { float.store(v, at: i); half.store(v, at: i) }
    @inlinable @inline(__always) public func storePartial(_ v: Vec, at i: Int, count: Int) {
        float.storePartial(v, at: i, count: count); half.storePartial(v, at: i, count: count)
    }
    @inlinable @inline(__always) public func store(_ x: Float, at i: Int) { float.store(x, at: i); half.store(x, at: i) }
}

/// Writes nothing: the kernel's optional second output, absent.
public struct NoSink: VectorSink {
    @inlinable public init() {}
    @inlinable @inline(__always) public func store(_ v: Vec, at i: Int) {}
    @inlinable @inline(__always) public func storePartial(_ v: Vec, at i: Int, count: Int) {}
    @inlinable @inline(__always) public func store(_ x: Float, at i: Int) {}
}
