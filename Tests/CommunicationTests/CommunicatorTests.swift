import Communication
import Tensors
import XCTest

/// The single-process communicator and the helpers built on it (no MPI in this process: MPI
/// jobs are tested as `mpirun` subprocesses in MPIJobTests).
final class CommunicatorTests: XCTestCase {
    func testSingleProcessCollectivesLeaveOrCopyTheData() throws {
        let c: Communicator = SingleProcess()
        XCTAssertEqual([c.rank, c.size, c.localRank, c.localSize], [0, 1, 0, 1])
        let buffer = FloatBuffer([1, 2, 3])
        try c.allReduce(buffer, .sum, label: "test")
        XCTAssertEqual(buffer.toArray(), [1, 2, 3])
        XCTAssertEqual(try c.allReduce(2.5, .max, label: "test"), 2.5)
        XCTAssertEqual(try c.allGather(Int64(7), label: "test"), [7])
        XCTAssertEqual(try c.gather("hello", label: "test"), ["hello"])
        XCTAssertEqual(try c.broadcast("text", label: "test"), "text")
        XCTAssertTrue(try c.startBarrier(label: "test").test())
        try c.verifySameFields([("a", "1")], what: "test")
        let hash = try c.verifyIdentical(UnsafeRawBufferPointer(buffer.rawBytes), what: "test")
        XCTAssertEqual(hash, XXH64.hash(UnsafeRawBufferPointer(buffer.rawBytes)))
    }

    /// Nested Codable values flatten to sorted `path = JSON` fields, and absent optionals are
    /// absent (so a rank that has one and a rank that does not are told apart).
    func testFlatFields() throws {
        struct Inner: Codable { var peak: Float; var kind: String }
        struct Outer: Codable { var batch: Int; var clip: Float?; var schedule: Inner; var sizes: [Int] }
        let fields = try flatFields(Outer(batch: 4, clip: nil, schedule: Inner(peak: 0.5, kind: "cosine"), sizes: [1, 2]),
                                    prefix: "options")
        XCTAssertEqual(fields.map(\.name), ["options.batch", "options.schedule.kind", "options.schedule.peak",
                                            "options.sizes[0]", "options.sizes[1]"])
        XCTAssertEqual(fields.map(\.value), ["4", "\"cosine\"", "0.5", "1", "2"])
    }

    func testWatchdogMessagesNameTheRank() {
        let timeout = WatchdogTimeout(rank: 0, label: "gradient all-reduce of update 7", sequence: 15, waited: 20.2,
                                      missing: [MissingRank(rank: 1, state: .notArrived),
                                                MissingRank(rank: 3, state: .silentInside(seconds: 14))])
        XCTAssertEqual(timeout.description,
                       "watchdog on rank 0: gradient all-reduce of update 7 (collective #15) did not complete within 20 s: "
                       + "rank 1 has not reached it (stopped, hung, or still busy before it); "
                       + "rank 3 reached it but has been silent for 14 s (stopped or hung inside it)")
    }
}
