#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed-size, 64-byte aligned, heap-allocated array of trivial values (`Float`, `Int32`, ...).
///
/// Parameters, gradients, Adam moments and activations each live in one `Buffer<Float>`, carved
/// into named views by offset, so optimizer, zeroing, hashing and all-reduce are single loops.
/// Hot loops take `pointer` (no bounds checks, no retain/release inside the loop).
public final class Buffer<Element> {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Element>

    /// Allocates `count` elements; zero-filled unless `zeroed` is false.
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "negative buffer size \(count)")
        self.count = count
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(count, 1) * MemoryLayout<Element>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        if zeroed { memset(raw, 0, bytes) }
        pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    /// Allocates a copy of `values`.
    public convenience init(_ values: [Element]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { free(pointer) }

    public var buffer: UnsafeMutableBufferPointer<Element> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    public var rawBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pointer, count: count * MemoryLayout<Element>.stride)
    }

    public subscript(index: Int) -> Element {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    /// Sets every byte to zero.
    public func zero() { memset(pointer, 0, count * MemoryLayout<Element>.stride) }

    /// Copies `other` (same count) into this buffer.
    public func copy(from other: Buffer<Element>) {
        precondition(other.count == count, "buffer size mismatch: \(other.count) vs \(count)")
        pointer.update(from: other.pointer, count: count)
    }

    public func toArray() -> [Element] { Array(buffer) }
}

public typealias FloatBuffer = Buffer<Float>
