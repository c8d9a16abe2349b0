import Foundation
import Tensors
import TestSupport
import Training
import XCTest

/// The knowledge-inheritance loss against an independent reference (issue 26, Must show 2):
/// PyTorch's F.cross_entropy and F.kl_div on the same logits, the gradient from autograd
/// (Tests/Fixtures/distillation.json, from scripts/make_distillation_fixture.py), at temperatures
/// 1, 2 and 4, with the teacher's full distribution and with its top-K (the cache path).
final class DistillationReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var temperature: Float
            var topK: Int?
            var loss, crossEntropy, kl: Double
            var gradient: [Float]
            var ids: [Int32]?
            var teacherTopK: [Float]?
        }
        var rows, vocab: Int
        var weight: Float
        var targets: [Int32]
        var student, teacher: [Float]
        var cases: [Case]
    }

    func testLossAndGradientMatchPyTorch() throws {
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtureURL("distillation.json")))
        XCTAssertEqual(f.cases.count, 6)
        for c in f.cases {
            var logits = f.student
            let value = logits.withUnsafeMutableBufferPointer { z in
                f.targets.withUnsafeBufferPointer { targets in
                    f.teacher.withUnsafeBufferPointer { teacher -> DistillationLoss.Value in
                        if let ids = c.ids, let values = c.teacherTopK, let k = c.topK {
                            return ids.withUnsafeBufferPointer { ids in
                                values.withUnsafeBufferPointer { values in
                                    DistillationLoss().apply(logits: z.baseAddress!, targets: targets.baseAddress!, rows: f.rows, vocab: f.vocab,
                                                             teacher: .topK(ids: ids.baseAddress!, logits: values.baseAddress!, k: k),
                                                             temperature: c.temperature, weight: f.weight, writeGradient: true)
                                }
                            }
                        }
                        return DistillationLoss().apply(logits: z.baseAddress!, targets: targets.baseAddress!, rows: f.rows, vocab: f.vocab,
                                                        teacher: .dense(teacher.baseAddress!), temperature: c.temperature,
                                                        weight: f.weight, writeGradient: true)
                    }
                }
            }
            let name = "tau \(c.temperature), \(c.topK.map { "top \($0)" } ?? "full")"
            // TESTING.md: loss to 1e-4 relative, the gradient to 1e-4 as ||g - g_ref|| / ||g_ref||.
            XCTAssertEqual(value.loss, c.loss, accuracy: 1e-4 * abs(c.loss), name)
            XCTAssertEqual(value.crossEntropy, c.crossEntropy, accuracy: 1e-4 * abs(c.crossEntropy), name)
            XCTAssertEqual(value.kl, c.kl, accuracy: 1e-4 * abs(c.kl) + 1e-7, name)
            let error = logits.withUnsafeBufferPointer { normRelativeError($0.baseAddress!, c.gradient[...]) }
            XCTAssertLessThanOrEqual(error, 1e-4, name)
            print(String(format: "KI loss vs PyTorch, %@: loss %.6f (ref %.6f), gradient relative error %.1e", name, value.loss, c.loss, error))
        }
    }
}
