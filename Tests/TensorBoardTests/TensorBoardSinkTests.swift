import Foundation
import TensorBoard
import TestSupport
import Training
import XCTest

final class TensorBoardSinkTests: XCTestCase {
    func tags(_ record: [String: Any]) -> [String: Float] {
        Dictionary(uniqueKeysWithValues: TensorBoardSink.scalars(of: record).map { ($0.tag, $0.value) })
    }

    /// The tag rule scripts/check_tensorboard.py applies to metrics.jsonl: group = event (or
    /// train), numbers as group/key, per-domain lists labelled by `domains`, placement keys,
    /// strings and booleans left out.
    func testTagRule() {
        XCTAssertEqual(tags(["stage": 1, "phase": "main", "update": 20, "step": 860, "loss": 4.25, "lr": Double(Float(2e-3)),
                             "tokens_per_second": 1234.5, "mfu": 0.125, "replay_share": 0.25, "flops": 3.5e12, "tokens": 123_456]),
                       ["train/loss": 4.25, "train/lr": 2e-3, "train/tokens_per_second": 1234.5, "train/mfu": 0.125,
                        "train/replay_share": 0.25, "train/flops": 3.5e12, "train/tokens": 123_456])
        XCTAssertEqual(tags(["event": "stage_end", "stage": 1, "step": 1240, "domain": "legal", "domains": ["literature", "legal"],
                             "perplexities": [30.5, 12.25], "ap": 21.375, "ap_plus": 1.5, "flops": 1e13]),
                       ["stage_end/perplexities/literature": 30.5, "stage_end/perplexities/legal": 12.25,
                        "stage_end/ap": 21.375, "stage_end/ap_plus": 1.5, "stage_end/flops": 1e13])
        XCTAssertEqual(tags(["event": "growth", "step": 3, "config": "gpt L3", "before": [1.5, 2.5], "done": true]),
                       ["growth/before/0": 1.5, "growth/before/1": 2.5])
        XCTAssertEqual(tags(["event": "restart", "step": 40]), [:])
        XCTAssertEqual(tags(["event": "eval", "step": 2, "valid_loss": 1, "parameters_xxh64": "00ff"]), ["eval/valid_loss": 1])
    }

    /// A new run refuses a folder with another run's event files; a resumed run adds a file whose
    /// restart marker comes right after the checkpoint's update; a note is a text summary.
    func testFolderRuleRestartAndNotes() throws {
        let folder = temporaryFolder("elle-tensorboard-sink")
        let sink = try TensorBoardSink(folder: folder, resumed: false, clock: { 1700000000 })
        sink.record(["step": 5, "loss": 2.5, "phase": "main"])
        sink.note("stage 1/2 (a) done", step: 5)
        XCTAssertThrowsError(try TensorBoardSink(folder: folder, resumed: false)) { error in
            XCTAssertTrue("\(error)".contains("one run per folder"), "\(error)")
        }
        let resumed = try TensorBoardSink(folder: folder, resumed: true, clock: { 1700000100 })
        resumed.restarted(atStep: 4)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains("tfevents") }.count, 2)
        func file(_ events: [Event]) -> Data { Data(events.flatMap { TFRecord.frame($0.encoded) }) }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: sink.path)), file([
            Event(wallTime: 1700000000, step: 0, content: .fileVersion("brain.Event:2")),
            Event(wallTime: 1700000000, step: 5, content: .scalars([("train/loss", 2.5)])),
            Event(wallTime: 1700000000, step: 5, content: .text(tag: "notes", text: "stage 1/2 (a) done")),
        ]))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: resumed.path)), file([
            Event(wallTime: 1700000100, step: 0, content: .fileVersion("brain.Event:2")),
            Event(wallTime: 1700000100, step: 5, content: .sessionStart),
        ]))
    }
}
