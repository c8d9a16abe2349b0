/// bfloat16: the upper 16 bits of a float32 (sign, 8 exponent bits, 7 mantissa bits). Mixed
/// precision keeps the operands of matrix products in it (docs/ARCHITECTURE.md, "bf16").
///
/// float32 -> bf16 here is integer arithmetic on the bits: round to nearest, ties to even, on the
/// dropped 16 bits; a NaN stays a NaN and becomes quiet (sign kept); +-inf stay; values that round
/// past the largest bf16 become inf. Subnormals are kept (rounded like any other value), never
/// flushed: unlike the AVX512_BF16 conversion instruction, this gives the same bits on every CPU.
/// bf16 -> float32 is exact (16 zero bits appended).
public struct BF16: Sendable, Hashable {
    public var bits: UInt16

    public init(bits: UInt16) { self.bits = bits }

    /// The nearest bf16 (ties to even).
    @inlinable
    public init(_ value: Float) { bits = bf16Bits(Vec(repeating: value))[0] }

    @inlinable
    public var float: Float { Float(bitPattern: UInt32(bits) << 16) }
}

/// Lane by lane, the bits of the bf16 nearest to each float (see `BF16`).
@_transparent
public func bf16Bits(_ v: Vec) -> SIMD16<UInt16> {
    let u = unsafeBitCast(v, to: SIMD16<UInt32>.self)
    // Adding 0x7FFF plus the lowest kept bit carries into the kept (upper) half exactly when the
    // dropped half is above one half, or equal to it with an odd kept part (ties to even). A NaN
    // keeps its upper half with the quiet bit set instead.
    let rounded = (u &+ (0x7FFF &+ ((u &>> 16) & 1))).replacing(with: u | 0x0040_0000, where: v .!= v)
    // The upper halves, taken as the odd 16-bit lanes. Written this way (a float compare for NaN,
    // no shift-and-truncate) the compiler keeps whole 256-bit registers; an integer compare or a
    // truncating conversion made every kernel that stores bf16 2-3x slower.
    return unsafeBitCast(rounded, to: SIMD32<UInt16>.self).oddHalf
}

/// Stores 16 floats as bf16.
@_transparent
public func storeBF16(_ v: Vec, _ p: UnsafeMutablePointer<BF16>) {
    UnsafeMutableRawPointer(p).storeBytes(of: bf16Bits(v), as: SIMD16<UInt16>.self)
}

/// Stores the low `count` (< 16) lanes of `v` as bf16.
@inlinable @inline(__always)
public func storePartialBF16(_ v: Vec, _ p: UnsafeMutablePointer<BF16>, _ count: Int) {
    let bits = bf16Bits(v)
    let raw = UnsafeMutableRawPointer(p)
    for i in 0..<count { raw.storeBytes(of: bits[i], toByteOffset: 2 * i, as: UInt16.self) }
}

/// Loads 16 bf16 values as floats (exact).
@inlinable @inline(__always)
public func loadBF16(_ p: UnsafePointer<BF16>) -> Vec {
    let h = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt16>.self)
    return unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16, to: Vec.self)
}

/// Loads `count` (< 16) bf16 values into the low lanes of a zero vector.
@inlinable @inline(__always)
public func loadPartialBF16(_ p: UnsafePointer<BF16>, _ count: Int) -> Vec {
    var v = Vec()
    let raw = UnsafeRawPointer(p)
    for i in 0..<count { v[i] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
    return v
}

/// The bulk conversions mixed precision needs: each is one pass, split across `Parallel.threads`
/// by rows (every element is converted by the same code whatever the split).
public enum BF16Convert {
    /// dst[i] = bf16(src[i]) on the calling thread.
    @inlinable @inline(__always)
    public static func serial(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<BF16>, count n: Int) {
        var i = 0
        while i + vecWidth <= n { storeBF16(loadVec(src + i), dst + i); i += vecWidth }
        if i < n { storePartialBF16(loadPartial(src + i, n - i), dst + i, n - i) }
    }

    /// dst[i] = float(src[i]) on the calling thread.
    @inlinable @inline(__always)
    public static func widenSerial(_ src: UnsafePointer<BF16>, _ dst: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + vecWidth <= n { storeVec(loadBF16(src + i), dst + i); i += vecWidth }
        if i < n { storePartial(loadPartialBF16(src + i, n - i), dst + i, n - i) }
    }

    /// A (rows, cols) block with row strides `lds` and `ldd`, on the calling thread.
    @inlinable @inline(__always)
    public static func rowsSerial(_ src: UnsafePointer<Float>, lds: Int, _ dst: UnsafeMutablePointer<BF16>, ldd: Int,
                                  rows: Int, cols: Int) {
        for r in 0..<rows { serial(src + r * lds, dst + r * ldd, count: cols) }
    }

    /// dst[i] = bf16(src[i]), split across threads.
    public static func convert(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<BF16>, count n: Int) {
        Parallel.forRanges(n, grain: 1024, minimum: 1 << 15) { _, r in
            serial(src + r.lowerBound, dst + r.lowerBound, count: r.count)
        }
    }

    /// Converts a (rows, cols) float matrix in place: row r's bf16 values go to the start of its
    /// own float row, so the result is a bf16 matrix with row stride 2 * cols. Each row is read
    /// front to back before the bytes it overwrites are needed, so no copy is made.
    public static func inPlace(_ matrix: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        Parallel.forRanges(rows, minimum: 4) { _, range in
            for r in range {
                let src = matrix + r * cols
                let dst = UnsafeMutableRawPointer(src).assumingMemoryBound(to: BF16.self)
                // Chunk j's bytes land at float index j / 2, which the loop has read already.
                var j = 0
                while j + vecWidth <= cols { let v = loadVec(src + j); storeBF16(v, dst + j); j += vecWidth }
                if j < cols { let v = loadPartial(src + j, cols - j); storePartialBF16(v, dst + j, cols - j) }
            }
        }
    }
}

/// A bf16 copy of a float buffer (the weights under mixed precision), refreshed once per update:
/// `AdamW` writes it in the same pass as the parameters, anything else that changes the
/// parameters marks it stale and the next forward pass converts it whole.
public final class BF16Copy {
    public let buffer: Buffer<BF16>
    /// Whether `buffer` holds the current parameters.
    public var isCurrent = false

    public init(count: Int) { buffer = Buffer<BF16>(count: count) }

    /// The copy a model of `count` parameters needs under `precision`: none under fp32, `current`
    /// when there is one, else a new (stale) one.
    public static func matching(_ precision: Precision, _ current: BF16Copy?, count: Int) -> BF16Copy? {
        precision == .fp32 ? nil : current ?? BF16Copy(count: count)
    }

    public var pointer: UnsafeMutablePointer<BF16> { buffer.pointer }

    /// Converts `source` if the copy is stale.
    public func refresh(from source: FloatBuffer) {
        precondition(source.count == buffer.count, "bf16 copy of \(buffer.count) values for a buffer of \(source.count)")
        if isCurrent { return }
        Profiler.measure(.conversion) { BF16Convert.convert(source.pointer, buffer.pointer, count: source.count) }
        isCurrent = true
    }

    /// Converts `range` of `source` alone (the same bits as converting it whole); the caller
    /// sets `isCurrent` once every part is done.
    public func convert(from source: FloatBuffer, _ range: Range<Int>) {
        precondition(source.count == buffer.count && range.upperBound <= source.count, "bf16 copy range out of bounds")
        Profiler.measure(.conversion) {
            BF16Convert.convert(source.pointer + range.lowerBound, buffer.pointer + range.lowerBound, count: range.count)
        }
    }
}
