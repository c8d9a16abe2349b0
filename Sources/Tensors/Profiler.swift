import Dispatch

/// Where a training step spends its time, for `elle bench`. Off by default; when on, the few
/// instrumented entry points (`gemm`, attention, the optimizer, the conversion passes of mixed
/// precision) add their wall time to a phase. Everything else in a step is elementwise work
/// (norms, GELU, residuals, cross-entropy, bias and embedding gradients), reported as the
/// remainder. Conversions fused into the kernel that produces the values (a norm writing bf16)
/// count in that kernel's phase; `conversion` is the passes that only convert. Only the
/// coordinating thread records.
public enum Profiler {
    public enum Phase: Int, CaseIterable, Sendable {
        case gemm, attention, optimizer, conversion
        public var name: String { ["gemm", "attention", "optimizer", "conversion"][rawValue] }
    }

    /// A matrix product as `gemm` saw it.
    public struct GemmShape: Hashable, Sendable {
        public var transA, transB: Bool
        public var m, n, k: Int
        /// The operands' precision.
        public var precision: Precision
        public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
        public init(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, precision: Precision = .fp32) {
            self.transA = transA; self.transB = transB; self.m = m; self.n = n; self.k = k
            self.precision = precision
        }
    }

    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) private static var nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
    /// Every `gemm` call while enabled, in call order.
    nonisolated(unsafe) public private(set) static var gemmCalls: [GemmShape] = []

    public static func reset() {
        nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
        gemmCalls = []
    }

    public static func seconds(_ phase: Phase) -> Double { Double(nanoseconds[phase.rawValue]) / 1e9 }

    @inline(__always)
    public static func measure<T>(_ phase: Phase, _ body: () -> T) -> T {
        if !enabled { return body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        nanoseconds[phase.rawValue] &+= DispatchTime.now().uptimeNanoseconds - start
        return result
    }

    static func record(_ shape: GemmShape) { if enabled { gemmCalls.append(shape) } }
}
