import Tensors

/// A saved activation that matrix products read, in an activation buffer: its float32 values, its
/// bf16 values, or both. Under fp32 it is float32 only; under bf16 it is bf16, plus float32 when
/// float32 kernels read it too (a residual stream that is also a product's input).
struct OperandSlot {
    /// Offsets in floats from the buffer's start.
    var float: Int?
    var half: Int?

    /// Where the kernel that produces the activation writes it.
    func output(_ base: UnsafeMutablePointer<Float>) -> OperandOutput {
        OperandOutput(fp32: float.map { base + $0 }, bf16: half.map { bf16(base + $0) })
    }

    /// What products read: the bf16 values when there are any.
    func operand(_ base: UnsafeMutablePointer<Float>) -> Operand {
        if let half { return .bf16(bf16(base + half)) }
        return .fp32(base + float!)
    }

    /// The float32 values (the slot must keep them).
    func floats(_ base: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        guard let float else { preconditionFailure("this activation has no float32 values under bf16") }
        return base + float
    }

    /// The bf16 values (under bf16 only).
    func halves(_ base: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<BF16> {
        guard let half else { preconditionFailure("this activation has no bf16 values under fp32") }
        return bf16(base + half)
    }

    /// Gathers rows into `out` (`RowGather`) in the form this slot keeps products' values in.
    func gather(into out: OperandSlot, _ base: UnsafeMutablePointer<Float>, rows: UnsafePointer<Int32>, count: Int, width: Int) {
        if half != nil {
            RowGather.forward(out: out.halves(base), x: halves(base), rows: rows, count: count, width: width)
        } else {
            RowGather.forward(out: out.floats(base), x: floats(base), rows: rows, count: count, width: width)
        }
    }
}

/// Views float storage as bf16 (an activation buffer holds both kinds).
@inline(__always)
func bf16(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<BF16> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: BF16.self)
}

extension Carver {
    /// An activation products read (`OperandSlot`): float32 under fp32; under bf16, bf16 (aligned
    /// to 64 bytes) plus float32 when `keepFloat`.
    mutating func takeOperand(_ name: String, _ shape: [Int], precision: Precision, keepFloat: Bool = false) -> OperandSlot {
        switch precision {
        case .fp32:
            return OperandSlot(float: take(name, shape), half: nil)
        case .bf16:
            let float = keepFloat ? take(name, shape) : nil
            return OperandSlot(float: float, half: takeHalves(name + ".bf16", shape.reduce(1, *)))
        }
    }

    /// Room for `count` bf16 values, aligned to 64 bytes; returns its offset in floats.
    mutating func takeHalves(_ name: String, _ count: Int) -> Int {
        let misaligned = self.count % 16
        if misaligned != 0 { _ = take("padding", [16 - misaligned]) }
        return take(name, [((count + 1) / 2 + 15) / 16 * 16])
    }
}

/// The weights as products read them: the float32 parameters, or their bf16 copy.
struct WeightOperands {
    let parameters: UnsafeMutablePointer<Float>
    let copy: UnsafeMutablePointer<BF16>?

    subscript(offset: Int) -> Operand {
        if let copy { return .bf16(copy + offset) }
        return .fp32(parameters + offset)
    }
}

extension Linear.GradientCopy {
    /// Into the bf16 scratch at `offset` in an activation buffer (bf16), or none without one (fp32).
    static func scratch(_ offset: Int?, in base: UnsafeMutablePointer<Float>) -> Linear.GradientCopy {
        offset.map { .into(bf16(base + $0)) } ?? .none
    }
}
