import Foundation
import TensorBoard

/// Writes a run's metrics as TensorBoard event files in its own folder (`--tensorboard DIR`, the
/// plan key `tensorboard`): every metrics.jsonl record's numbers as scalars, the notes (growth,
/// stage ends) as text, a resume as a restart. Rank 0 only (`RunOutput` adds it there).
///
/// Tags follow one rule, which `scripts/check_tensorboard.py` applies to metrics.jsonl to check
/// the files: a record's group is its `event` ("train" for the progress records, which have
/// none); each number becomes `group/key` and each list of numbers `group/key/LABEL`, LABEL the
/// record's `domains` entry at that index (or the index); `step`, `stage` and `update` only place
/// the point. So a lifelong run shows `train/loss`, `train/lr`, `train/tokens_per_second`,
/// `train/mfu`, `train/replay_share`, `eval/perplexities/<domain>`, `stage_end/ap`,
/// `stage_end/ap_plus`...; a plain run `train/loss`, `eval/valid_perplexity`...
public final class TensorBoardSink: MetricsSink {
    public static let notesTag = "notes"
    public let folder: String
    /// The event file this sink writes.
    public var path: String { writer.path }
    private let writer: EventFileWriter

    /// A new event file in `folder`. A new run (`resumed` false) wants a folder without event
    /// files: one run per folder, so runs compare side by side under one `--logdir`.
    /// `clock` gives the records' wall times (seconds since 1970).
    public init(folder: String, resumed: Bool, clock: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        if !resumed && EventFileWriter.hasEventFiles(in: folder) {
            throw TensorBoardError(path: folder, "already holds TensorBoard event files of another run (one run per folder): name a new folder, or remove them")
        }
        self.folder = folder
        writer = try EventFileWriter(folder: folder, clock: clock)
    }

    public func record(_ fields: [String: Any]) {
        guard let step = fields["step"] as? Int else { return }
        report { try writer.scalars(TensorBoardSink.scalars(of: fields), step: step) }
    }

    public func note(_ text: String, step: Int) {
        report { try writer.text(text, tag: TensorBoardSink.notesTag, step: step) }
    }

    /// The run continued from a checkpoint after update `step`: TensorBoard drops the points
    /// written from update `step + 1` on before this (a crashed run's), keeping the checkpoint's.
    public func restarted(atStep step: Int) {
        report { try writer.sessionStart(step: step + 1) }
    }

    /// A failed write is reported once and not retried: the run itself goes on.
    private var failed = false
    private func report(_ write: () throws -> Void) {
        guard !failed else { return }
        do { try write() } catch {
            failed = true
            fputs("warning: TensorBoard events not written any more: \(error)\n", stderr)
        }
    }

    /// The scalars of one metrics record under the rule above, in key order.
    public static func scalars(of record: [String: Any]) -> [(tag: String, value: Float)] {
        let group = record["event"] as? String ?? "train"
        let labels = record["domains"] as? [String]
        var out: [(tag: String, value: Float)] = []
        for key in record.keys.sorted() where !placement.contains(key) {
            if let value = number(record[key]!) {
                out.append(("\(group)/\(key)", value))
            } else if let list = record[key] as? [Any] {
                let values = list.compactMap(number)
                guard values.count == list.count else { continue }
                for (i, value) in values.enumerated() {
                    let label = labels.flatMap { $0.count == values.count ? $0[i] : nil } ?? "\(i)"
                    out.append(("\(group)/\(key)/\(label)", value))
                }
            }
        }
        return out
    }

    /// Keys that place a point rather than measure something.
    static let placement: Set<String> = ["step", "stage", "update", "event", "phase", "domain", "domains"]

    /// A number of a metrics record as the run builds it (not a Bool).
    static func number(_ value: Any) -> Float? {
        switch value {
        case is Bool: return nil
        case let v as Double: return Float(v)
        case let v as Float: return v
        case let v as Int: return Float(v)
        case let v as Int64: return Float(v)
        case let v as UInt64: return Float(v)
        case let v as Int32: return Float(v)
        default: return nil
        }
    }
}
