import Foundation
import TestSupport
import XCTest

/// `--precision bf16` on a CPU without AVX512_BF16, simulated with ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN
/// 2.6 has no bf16 matmul there): the run still computes in bf16 (operands widened to float32 for
/// OpenBLAS), says in one line that it will be slower than fp32, and agrees with the native run.
final class PrecisionCLITests: XCTestCase {
    func bench(_ precision: String, environment: [String: String] = [:]) throws -> (json: [String: Any], stderr: String) {
        let result = try runProcess(elleExecutable, ["bench", "--layers", "2", "--width", "64", "--heads", "2", "--vocab", "500",
                                                     "--seq", "64", "--batch", "4", "--steps", "2", "--threads", "2",
                                                     "--precision", precision, "--json"], environment: environment)
        XCTAssertEqual(result.status, 0, result.stderr)
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").last)
        return (try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]), result.stderr)
    }

    func testBF16WithoutAVX512BF16() throws {
        let fallback = try bench("bf16", environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
        XCTAssertEqual(fallback.json["onednn_isa"] as? String, "avx2")
        XCTAssertEqual(fallback.json["backend"] as? String, "OpenBLAS on bf16 widened to float32")
        let notes = fallback.stderr.split(separator: "\n").filter { $0.contains("no AVX512_BF16") }
        XCTAssertEqual(notes.count, 1, fallback.stderr)
        XCTAssertTrue(notes.first?.contains("slower than --precision fp32") ?? false, fallback.stderr)

        let float = try bench("fp32")
        XCTAssertFalse(float.stderr.contains("AVX512_BF16"), float.stderr)
        let lossFallback = try XCTUnwrap(fallback.json["loss"] as? Double), lossFloat = try XCTUnwrap(float.json["loss"] as? Double)
        XCTAssertEqual(lossFallback, lossFloat, accuracy: 1e-2 * lossFloat)
        XCTAssertNotEqual(lossFallback, lossFloat, "the fallback did not round its operands to bf16")
        let native = try bench("bf16")
        if (native.json["onednn_isa"] as? String)?.contains("bf16") == true {
            XCTAssertEqual(native.json["backend"] as? String, "oneDNN")
            XCTAssertTrue(native.stderr.isEmpty, native.stderr)
            // Same bf16 operands; only the accumulation order and subnormal handling differ.
            let lossNative = try XCTUnwrap(native.json["loss"] as? Double)
            print("loss: fp32 \(lossFloat), bf16 native \(lossNative), bf16 widened (AVX2) \(lossFallback)")
            XCTAssertEqual(lossFallback, lossNative, accuracy: 1e-3 * lossNative)
        }
    }
}
