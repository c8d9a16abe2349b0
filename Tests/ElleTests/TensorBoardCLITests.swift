import Foundation
import TestSupport
import XCTest

/// `--tensorboard` on a plain run, as a user runs it.
final class TensorBoardCLITests: XCTestCase {
    /// The folder gets an event file; the resumed run (without the flag: the run keeps its folder)
    /// adds a second one that starts with the restart marker at the update after the checkpoint;
    /// a new run into the same folder is refused (one run per folder).
    func testPlainRunWritesResumesAndKeepsOneRunPerFolder() throws {
        let folder = temporaryFolder("elle-tensorboard-cli")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let run = folder + "/run", board = folder + "/board"
        let arguments = ["train", "--data", sampleDataPath(), "--out", run, "--layers", "1", "--width", "32", "--heads", "2",
                         "--seq", "32", "--batch", "4", "--steps", "12", "--log-every", "2", "--eval-every", "4", "--threads", "1"]
        let first = try runProcess(elleExecutable, arguments + ["--tensorboard", board, "--stop-after", "7"])
        XCTAssertEqual(first.status, 0, first.stderr)
        func eventFiles() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: board).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
        }
        XCTAssertEqual(try eventFiles().count, 1)
        let resumed = try runProcess(elleExecutable, ["train", "--out", run, "--resume", "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let files = try eventFiles()
        XCTAssertEqual(files.count, 2)
        let second = try [UInt8](Data(contentsOf: URL(fileURLWithPath: board + "/" + files[1])))
        // Event { step: 8, session_log { status: START } } after its wall time.
        let restart: [UInt8] = [0x10, 8, 0x3A, 0x02, 0x08, 0x01]
        XCTAssertTrue((0...(second.count - restart.count)).contains { Array(second[$0..<$0 + restart.count]) == restart })
        let again = try runProcess(elleExecutable, arguments.map { $0 == run ? folder + "/other" : $0 } + ["--tensorboard", board])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("one run per folder"), again.stderr)
    }
}
