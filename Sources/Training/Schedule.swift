#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Learning rate as a function of the update index (0 = first update).
///
/// Every schedule but `constant` warms up linearly from `initial` to `peak` over `warmup`
/// updates, then:
/// - `linear`: decays linearly to 0 at `total` (BERT, the ELLE reference);
/// - `cosine`: follows a half cosine down to `minimum` at `total`;
/// - `inverseSqrt`: peak * sqrt(warmup / (step + 1)), never reaching 0 (fairseq's GPT recipe).
public struct LearningRateSchedule: Codable, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        case constant, linear, cosine
        case inverseSqrt = "inverse-sqrt"
    }

    public var kind: Kind
    public var peak: Float
    public var warmup: Int
    public var total: Int
    public var minimum: Float
    public var initial: Float

    public init(kind: Kind, peak: Float, warmup: Int = 0, total: Int = 0, minimum: Float = 0, initial: Float = 0) {
        self.kind = kind
        self.peak = peak
        self.warmup = warmup
        self.total = total
        self.minimum = minimum
        self.initial = initial
    }

    public func callAsFunction(_ step: Int) -> Float {
        if kind == .constant { return peak }
        if step < warmup {
            return initial + (peak - initial) * Float(step + 1) / Float(warmup)
        }
        switch kind {
        case .constant:
            return peak
        case .linear:
            let span = max(total - warmup, 1)
            return peak * max(0, Float(total - step) / Float(span))
        case .cosine:
            let span = max(total - warmup, 1)
            let progress = min(1, Double(step - warmup) / Double(span))
            return minimum + (peak - minimum) * Float(0.5 * (1 + cos(Double.pi * progress)))
        case .inverseSqrt:
            return peak * Float((Double(max(warmup, 1)) / Double(step + 1)).squareRoot())
        }
    }

    public var description: String {
        switch kind {
        case .constant: return "constant \(peak)"
        case .linear: return "linear warmup \(warmup) peak \(peak) to 0 at \(total)"
        case .cosine: return "cosine warmup \(warmup) peak \(peak) to \(minimum) at \(total)"
        case .inverseSqrt: return "inverse-sqrt warmup \(warmup) from \(initial) peak \(peak)"
        }
    }
}
