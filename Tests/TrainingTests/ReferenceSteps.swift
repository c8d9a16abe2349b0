import Model
import Tensors
import TestSupport
import Training
import XCTest

/// The `steps` part of the PyTorch fixtures (scripts/make_gpt_fixture.py, make_bert_fixture.py):
/// a short training run from the fixture's parameters, each update a forward and backward pass on
/// its own batch, gradient clipping that acts (every step's norm is above `clip`) and AdamW with
/// weight decay 0.1. Unlike one step, whose bias-corrected update is lr g / |g| for any betas,
/// three steps on different batches depend on beta1 and beta2 separately, and decay moves a
/// weight by 3e-4 of itself, 30 times the tolerance.
struct ReferenceSteps: Decodable {
    struct Batch: Decodable {
        var tokens: [Int32]
        var targets: [Int32]
        var loss: Double
        /// The gradient norm before clipping (`torch.nn.utils.clip_grad_norm_`'s result).
        var norm: Double
    }
    var lr, beta1, beta2, eps, weight_decay, clip: Float
    var batches: [Batch]
    /// Parameters after the last step, in elle's layout.
    var updated: [Float]

    /// Runs the steps on `model`, which holds the fixture's parameters, and compares each step's
    /// loss and gradient norm (TESTING.md's 1e-4 for losses and gradients), the norm after
    /// clipping (`clip`), and the parameters at the end: each to 1e-5 of itself (one step's
    /// tolerance, above float32 rounding) plus 1e-4 (the gradients' tolerance) of the most the run
    /// can move a weight, steps x lr. Compared where every step's gradient is >= 1e-3 RMS, as for
    /// one step (Adam turns a rounding error on a near-zero gradient into a step of about lr).
    func check(_ model: LanguageModel, batch: Int, seq: Int, fixture: String, file: StaticString = #filePath, line: UInt = #line) {
        Parallel.configure(threads: 2)
        let optimizer = AdamW(tensors: model.tensors, count: model.parameterCount,
                              settings: AdamWSettings(beta1: beta1, beta2: beta2, epsilon: eps, weightDecay: weight_decay))
        var compared = [Bool](repeating: true, count: model.parameterCount)
        for (k, step) in batches.enumerated() {
            model.zeroGradients()
            let loss = model.forward(tokens: step.tokens, targets: step.targets, batch: batch, seq: seq)
            XCTAssertEqual(Double(loss), step.loss, accuracy: 1e-4 * abs(step.loss), "loss of step \(k + 1)", file: file, line: line)
            model.backward()
            let g = model.gradients.pointer, count = model.parameterCount
            let rms = (sumOfSquares(g, count: count) / Double(count)).squareRoot()
            for i in 0..<count where Double(abs(g[i])) < 1e-3 * rms { compared[i] = false }
            let norm = clipGradients(model.gradients, maxNorm: clip)
            XCTAssertEqual(Double(norm), step.norm, accuracy: 1e-4 * step.norm, "gradient norm before clipping, step \(k + 1)",
                           file: file, line: line)
            XCTAssertGreaterThan(Double(norm), Double(clip), "the fixture's steps must clip", file: file, line: line)
            let clipped = sumOfSquares(g, count: count).squareRoot()
            XCTAssertEqual(clipped, Double(clip), accuracy: 1e-5 * Double(clip), "gradient norm after clipping, step \(k + 1)",
                           file: file, line: line)
            optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: lr)
        }
        let moved = Double(batches.count) * Double(lr)
        var checked = 0, worst = 0.0, worstAt = 0
        for i in 0..<updated.count where compared[i] {
            let error = abs(Double(model.parameters[i]) - Double(updated[i])) / (1e-5 * abs(Double(updated[i])) + 1e-4 * moved)
            if error > worst { (worst, worstAt) = (error, i) }
            checked += 1
        }
        let name = model.tensors.first { $0.range.contains(worstAt) }?.name ?? "?"
        XCTAssertLessThan(worst, 1, "parameters after \(batches.count) clipped AdamW steps: worst error \(worst) tolerances, "
                          + "\(model.parameters[worstAt]) against \(updated[worstAt]) in \(name)", file: file, line: line)
        print("\(fixture): \(batches.count) clipped AdamW steps, worst parameter error \(worst) tolerances")
        XCTAssertGreaterThan(checked, updated.count / 2, "parameters compared", file: file, line: line)
    }
}
