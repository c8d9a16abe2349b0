import Foundation
import TestSupport
import Training
import XCTest

/// Bucketed all-reduce overlapped with backward, in real 2-rank jobs (docs/SCALING.md).
extension DataParallelJobTests {
    /// Many small buckets (0.002 MiB, smaller than most tensors, so every block's report starts
    /// several all-reduces while backward runs): 2 ranks x 1 micro-batch give the same losses,
    /// gradient norms, validation losses and final parameters, bit for bit, as 1 rank x 2
    /// micro-batches; and with 2 micro-batches per rank (only the last one overlaps) the same
    /// bits as buckets of 0 (one all-reduce after backward). (The default single-bucket case is
    /// `testTwoRanksMatchOneRankWithTwoMicroBatchesBitForBit`.)
    func testSmallBucketsMatchOneRankAndSerialAllReduceBitForBit() throws {
        let folders = (0..<4).map { _ in temporaryFolder() }
        defer { for f in folders { try? FileManager.default.removeItem(atPath: f) } }
        let small = ["--eval-every", "3", "--bucket-mb", "0.002"]
        let a = try runProcess(elleExecutable, tinyRun(out: folders[0], steps: 6) + small + ["--accumulation", "2"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try runMPI(2, tinyRun(out: folders[1], steps: 6) + small + ["--accumulation", "1"])
        XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
        let expected = try metrics(folders[0])
        XCTAssertEqual(expected.filter { $0.contains("\"loss\"") }.count, 6)
        XCTAssertEqual(try metrics(folders[1]), expected)
        let hash = try XCTUnwrap(finalHash(a.stdout))
        XCTAssertEqual(finalHash(b.stdout), hash)
        XCTAssertTrue(b.stdout.contains("identical on 2 rank(s)"), b.stdout)

        let c = try runMPI(2, tinyRun(out: folders[2], steps: 6) + small + ["--accumulation", "2"])
        XCTAssertEqual(c.status, 0, c.stdout + c.stderr)
        let d = try runMPI(2, tinyRun(out: folders[3], steps: 6) + ["--eval-every", "3", "--bucket-mb", "0", "--accumulation", "2"])
        XCTAssertEqual(d.status, 0, d.stdout + d.stderr)
        XCTAssertEqual(try metrics(folders[2]), try metrics(folders[3]))
        XCTAssertNotNil(finalHash(c.stdout))
        XCTAssertEqual(finalHash(c.stdout), finalHash(d.stdout))
    }

    /// `elle bench comm` on 2 ranks: all-reduce rows for each size asked, and the four step modes
    /// with a hidden fraction; the overlapped step started several collectives (buckets, the
    /// embedding rows' merge and sum).
    func testBenchCommReportsAllReducesAndOverlap() throws {
        let result = try runMPI(2, ["bench", "comm", "--layers", "2", "--width", "64", "--heads", "2", "--vocab", "300",
                                    "--seq", "32", "--batch", "2", "--steps", "2", "--threads", "1",
                                    "--sizes-mb", "0.01,0.5", "--repeats", "2", "--bucket-mb", "0.1", "--json"])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").last { $0.hasPrefix("{") }, result.stdout)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(report["ranks"] as? Int, 2)
        let sizes = try XCTUnwrap(report["allreduce"] as? [[String: Any]])
        XCTAssertEqual(sizes.compactMap { $0["bytes"] as? Int }, [10484, 524288])
        for row in sizes { XCTAssertGreaterThan(try XCTUnwrap(row["algbw_gbps"] as? Double), 0) }
        for mode in ["compute", "overlapped", "serial", "alone"] {
            let times = try XCTUnwrap(report["\(mode)_ms"] as? [Double], mode)
            XCTAssertEqual(times.count, 2)
            XCTAssertTrue(times.allSatisfy { $0 > 0 }, "\(mode): \(times)")
        }
        XCTAssertGreaterThan(try XCTUnwrap(report["collectives"] as? Int), 3)
        XCTAssertNotNil(report["hidden_fraction_median"] as? Double)
        // The parameters (2 layers, width 64, vocab 300, 32 positions) in float32, plus rows.
        XCTAssertGreaterThan(try XCTUnwrap(report["bytes_per_step"] as? Int), 4 * 119_000)
    }
}
