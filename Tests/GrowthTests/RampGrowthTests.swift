import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// The masked ramp (`GrowthRamp`, MSG) and the stack depth mode: exact at the growth for GPT and
/// post-LN BERT, in depth and width, whatever the new weights; the masked model's backward
/// against finite differences in the middle of a ramp; the ramp advancing with the updates, ending,
/// and resuming bit-exactly from a checkpoint taken in its middle.
final class RampGrowthTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    static let exact = 1e-5

    /// Logits at every position of a pass without targets.
    func allLogits(_ model: LanguageModel, _ tokens: [Int32], batch b: Int, seq t: Int) -> [Float] {
        model.forward(tokens: tokens, targets: nil, batch: b, seq: t)
        return Array(UnsafeBufferPointer(start: model.logits, count: model.logitRowCount * model.config.vocab))
    }

    func grown(_ model: LanguageModel, _ plan: GrowthPlan) throws -> LanguageModel {
        let result = try Growth.grow(parameters: model.parameters, config: model.config, plan: plan)
        return try makeModel(config: result.config, parameters: result.parameters)
    }

    /// Every growth kind with a ramp, random maps and noise 0.05 on the new units: the grown model
    /// computes the old logits (1e-5 relative, TESTING.md) at m = 0. Without the ramp the same
    /// growths change the function (the contrast: BERT's identity depth by ~0.2, random maps by more).
    func testRampGrowthIsExactForGPTAndBERTInDepthAndWidth() throws {
        let gpt = try GPT(config: TrainedTiny.config, parameters: TrainedTiny.parameters())
        let batch = TrainedTiny.validationBatch(batch: 2, seq: 32)
        let gptBefore = allLogits(gpt, batch.tokens, batch: 2, seq: 32)
        let bert = try smallBERT()
        let bertBefore = allLogits(bert, smallBERTTokens, batch: 3, seq: 8)
        let shapes: [(String, Int, Int, Int)] = [("depth", 4, -1, -1), ("width", 2, 2, 2), ("both", 5, 3, 3)]
        for (model, before, tokens, b, t) in [(gpt as LanguageModel, gptBefore, batch.tokens, 2, 32),
                                              (bert as LanguageModel, bertBefore, smallBERTTokens, 3, 8)] {
            let c = model.config
            for (kind, layers, widthFactor, headFactor) in shapes {
                for mode in GrowthPlan.DepthMode.allCases where kind != "width" || mode == .copy {
                    let width = widthFactor > 0 ? c.width * widthFactor : c.width
                    let heads = headFactor > 0 ? c.heads * headFactor : c.heads
                    var plan = GrowthPlan(layers: layers, width: width, heads: heads, ffn: kind == "depth" ? nil : width * 4 + 8, depthMode: mode,
                                          source: .random, noise: 0.05, seed: 9)
                    let plain = allLogits(try grown(model, plan), tokens, batch: b, seq: t)
                    plan.ramp = 10
                    let ramped = try grown(model, plan)
                    let ramp = try XCTUnwrap(ramped.config.ramp)
                    XCTAssertEqual(ramp, GrowthRamp(length: 10, oldWidth: c.width, oldHeads: c.heads, oldFFN: c.ffn,
                                                    insertedLayers: mode == .stack ? Array(c.layers..<layers)
                                                        : ramp.insertedLayers))
                    XCTAssertEqual(ramp.insertedLayers.count, layers - c.layers)
                    let error = relative(allLogits(ramped, tokens, batch: b, seq: t), before)
                    let plainError = relative(plain, before)
                    print(String(format: "%@ %@ %@ ramp: %.2e (without: %.2e)", "\(c.architecture)", kind, mode.rawValue, error, plainError))
                    XCTAssertLessThanOrEqual(error, Self.exact, "\(c.architecture) \(kind) \(mode)")
                    // At m = 1 (the ramp done) nothing reads a new unit but through the noise (those
                    // weights start at zero): the norms' statistics, the noise and the inserted blocks
                    // change the function (printed: the ramp's end is not meant to be exact).
                    var done = ramped.config
                    done.ramp = nil
                    let end = try makeModel(config: done, parameters: ramped.parameters)
                    let kl = meanKL(before, allLogits(end, tokens, batch: b, seq: t), vocab: c.vocab)
                    print(String(format: "   at m = 1: mean KL %.2e per position", kl))

                    if !(c.architecture == .gpt && kind == "depth" && mode == .identity) {  // GPT's identity blocks are exact anyway
                        XCTAssertGreaterThan(plainError, 1e-3, "\(c.architecture) \(kind) \(mode): the growth without a ramp should change the function")
                    }
                }
            }
        }
    }

    /// G_stack: the grown layers repeat the whole stack in order; the lineage follows.
    func testStackRepeatsTheWholeStack() throws {
        var c = TrainedTiny.config
        c.layers = 3
        let (map, origins) = DepthMap.stack(config: c, layers: 8)
        XCTAssertEqual(map.sources, [0, 1, 2, 0, 1, 2, 0, 1])
        XCTAssertEqual(map.inserted, [false, false, false, true, true, true, true, true])
        XCTAssertEqual(origins, [0, 1, 2, 0, 1, 2, 0, 1])
        let model = try GPT(config: TrainedTiny.config, parameters: TrainedTiny.parameters())
        let plan = GrowthPlan(layers: 4, width: 32, heads: 2, depthMode: .stack, noise: 0)
        let result = try Growth.grow(parameters: model.parameters, config: model.config, plan: plan)
        let grown = try GPT(config: result.config, parameters: result.parameters)
        XCTAssertEqual(grown.config.layerOrigins, [0, 1, 0, 1])
        XCTAssertEqual(values(grown, "blocks.2.mlp.fc.weight"), values(model, "blocks.0.mlp.fc.weight"))
        XCTAssertEqual(values(grown, "blocks.3.attn.proj.weight"), values(model, "blocks.1.attn.proj.weight"))
    }

    /// The masked model's gradient against central differences (TESTING.md) at m = 0.4, after a
    /// growth in depth and width (every mask kind active), for GPT (with dropout) and BERT.
    func testMaskedModelGradientMidRamp() throws {
        // GPT: 2/16/2 -> 3/32/4, FFN 64 -> 96.
        var gptConfig = Tiny.config(dropout: 0.2)
        gptConfig.layers = 2
        let gpt = try GPT(config: gptConfig, seed: 11)
        fillUniform(gpt.parameters.pointer, gpt.parameterCount, scale: 0.3, seed: 12)
        let gptPlan = GrowthPlan(layers: 3, width: 2 * gptConfig.width, heads: 2 * gptConfig.heads, ffn: 3 * gptConfig.ffn / 2,
                                 noise: 0.1, seed: 3, ramp: 5)
        try checkMidRamp(gpt, gptPlan, batch: 2, dropoutSeed: 77)
        // BERT: 2/16/2 -> 3/32/4, FFN 64 -> 96; 12 predicted positions, padding.
        let bert = try smallBERT()
        try checkMidRamp(bert, GrowthPlan(layers: 3, width: 32, heads: 4, ffn: 96, noise: 0.1, seed: 3, ramp: 5),
                         batch: 3, dropoutSeed: nil)
    }

    func checkMidRamp(_ source: LanguageModel, _ plan: GrowthPlan, batch b: Int, dropoutSeed: UInt64?) throws {
        let result = try Growth.grow(parameters: source.parameters, config: source.config, plan: plan)
        var config = result.config
        config.ramp!.done = 2  // m = 0.4
        let model = try makeModel(config: config, parameters: result.parameters)
        XCTAssertEqual(model.config.ramp?.mask, 0.4)
        let t = config.context, v = config.vocab
        var tokens = randomTokens(b * t, vocab: v, seed: 13)
        var targets = randomTokens(b * t, vocab: v, seed: 14)
        if config.architecture == .bert {
            tokens = tokens.map { $0 == 1 ? 2 : $0 }
            tokens[b * t - 1] = 1
            targets = targets.enumerated().map { $0.offset % 2 == 0 ? $0.element : -1 }
        } else {
            targets[5] = -1
        }
        // The mean cross-entropy from the logits in Float64.
        func loss() -> Double {
            model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: dropoutSeed)
            var total = 0.0
            let rows = model.logitRowCount, rowTargets = model.logitRowTargets
            var counted = 0
            for row in 0..<rows where rowTargets[row] >= 0 {
                let logits = (0..<v).map { Double(model.logits[row * v + $0]) }
                let top = logits.max()!
                total += top + log(logits.map { exp($0 - top) }.reduce(0, +)) - logits[Int(rowTargets[row])]
                counted += 1
            }
            return total / Double(counted)
        }
        _ = loss()
        model.zeroGradients()
        model.backward()
        let analytic = FloatBuffer(count: model.parameterCount)
        analytic.copy(from: model.gradients)
        var mismatches: [GradientMismatch] = []
        for (k, spec) in model.tensors.enumerated() {
            mismatches += FiniteDifference.check(
                spec.name, values: model.parameters.pointer + spec.offset, analytic: analytic.pointer + spec.offset,
                count: spec.count, samples: 20, seed: UInt64(100 + k), loss: loss)
        }
        XCTAssert(mismatches.isEmpty, "\(config.architecture): " + mismatches.prefix(8).map(\.description).joined(separator: "\n"))
        // The new units get gradient (the mask is not 0) in every inserted block.
        for l in config.ramp!.insertedLayers {
            let spec = model.tensors.first { $0.name == "blocks.\(l).mlp.fc.weight" }!
            XCTAssertGreaterThan(sumOfSquares(analytic.pointer + spec.offset, count: spec.count), 0, "block \(l)")
        }
    }

    /// A trainer on the trained tiny model, 2 micro-batches per update, growing after update 2
    /// with a 4-update ramp; `run(until:)` applies due growth before each update.
    /// With `checkpointAt`, writes the checkpoint of that step (a checkpoint shares the trainer's
    /// buffers, so it is written at once) and returns its path.
    func trainer(_ steps: Int, checkpointAt: Int? = nil) throws -> (Trainer, String?) {
        var options = TrainedTiny.options(steps: 40, lr: 1e-3)
        options.accumulation = 2
        options.evalBatches = 2
        options.growth = ScheduledGrowth(step: 2, plan: GrowthPlan(layers: 3, width: 64, heads: 4, noise: 0.01, seed: 4, ramp: 4))
        let model = try GPT(config: TrainedTiny.config, parameters: TrainedTiny.parameters())
        let trainer = try Trainer(model: model, options: options, train: TrainedTiny.corpus.train, valid: TrainedTiny.corpus.valid)
        var saved: String?
        for _ in 0..<steps {
            if trainer.step == checkpointAt {
                let checkpoint = try trainer.checkpoint()
                XCTAssertEqual(checkpoint.config.ramp?.done, 2)
                saved = temporaryFolder("ramp-resume") + "/mid-ramp.ckpt"
                try checkpoint.write(to: saved!)
            }
            try trainer.growIfDue()
            _ = try trainer.trainStep()
        }
        return (trainer, saved)
    }

    /// The ramp advances once per update and is gone after its length, leaving the plain model;
    /// the validation loss at the growth is the old one (m = 0).
    func testRampAdvancesWithTheUpdatesAndEnds() throws {
        let (trainer, _) = try trainer(2)
        let before = try XCTUnwrap(try trainer.evaluate())
        try trainer.growIfDue()
        XCTAssertEqual(trainer.model.config.ramp?.done, 0)
        let at = try XCTUnwrap(try trainer.evaluate())
        XCTAssertEqual(Double(at), Double(before), accuracy: 1e-5 * Double(before))
        var seen: [Int?] = []
        for _ in 0..<4 {
            _ = try trainer.trainStep()
            seen.append(trainer.model.config.ramp?.done)
        }
        XCTAssertEqual(seen, [1, 2, 3, nil])
        XCTAssertEqual(trainer.model.config.layers, 3)
    }

    /// A checkpoint taken in the middle of the ramp (after update 4: m = 0.5) holds the ramp in its
    /// config; resuming from it gives the same parameters, bit for bit, as the run that went on.
    func testResumeInTheMiddleOfARampIsBitExact() throws {
        let (straight, saved) = try trainer(8, checkpointAt: 4)
        let path = try XCTUnwrap(saved)
        let resumed = try Trainer.resume(from: path, train: TrainedTiny.corpus.train, valid: TrainedTiny.corpus.valid)
        XCTAssertEqual(resumed.model.config.ramp?.done, 2)
        while resumed.step < 8 {
            try resumed.growIfDue()
            _ = try resumed.trainStep()
        }
        XCTAssertNil(resumed.model.config.ramp)
        XCTAssertTrue(bitIdentical(resumed.model.parameters.pointer, straight.model.parameters.pointer, straight.model.parameterCount))
        XCTAssertTrue(bitIdentical(resumed.optimizer.v.pointer, straight.optimizer.v.pointer, straight.model.parameterCount))
    }

    /// Under bf16 (TESTING.md's bf16 rules): at m = 0 the ramped model gives the old model's bf16
    /// loss (the old dimensions' operands are the same bf16 values, the new ones zero); at m = 0.4
    /// the masked model's bf16 loss is within 1e-2 of its fp32 loss and every gradient tensor
    /// within 5e-2 (norm relative), GPT and BERT.
    func testRampUnderBF16() throws {
        let gpt = try GPT(config: TrainedTiny.config, parameters: TrainedTiny.parameters())
        let bert = try smallBERT()
        for (source, b) in [(gpt as LanguageModel, 2), (bert as LanguageModel, 3)] {
            let c = source.config, t = min(c.context, 16)
            let plan = GrowthPlan(layers: c.layers + 1, width: 2 * c.width, heads: 2 * c.heads, noise: 0.05, seed: 2, ramp: 5)
            let result = try Growth.grow(parameters: source.parameters, config: c, plan: plan)
            var tokens = randomTokens(b * t, vocab: c.vocab, seed: 21)
            if c.architecture == .bert { tokens = tokens.map { $0 == 1 ? 2 : $0 } }
            let targets = randomTokens(b * t, vocab: c.vocab, seed: 22).enumerated().map { $0.offset % 3 == 0 ? $0.element : -1 }
            func lossAndGradient(_ model: LanguageModel, _ precision: Precision) -> (Double, [Float]) {
                model.precision = precision
                model.parametersChanged()
                model.forward(tokens: tokens, targets: targets, batch: b, seq: t, dropoutSeed: nil)
                model.zeroGradients()
                model.backward()
                return (model.lastLoss, Array(UnsafeBufferPointer(start: model.gradients.pointer, count: model.parameterCount)))
            }
            let grown = try makeModel(config: result.config, parameters: result.parameters)
            let (old, _) = lossAndGradient(source, .bf16)
            let (atGrowth, _) = lossAndGradient(grown, .bf16)
            print(String(format: "%@ bf16 at m = 0: loss %.7f, old model %.7f", "\(c.architecture)", atGrowth, old))
            XCTAssertEqual(atGrowth, old, accuracy: 1e-6 * old, "\(c.architecture)")
            var config = result.config
            config.ramp!.done = 2
            let mid = try makeModel(config: config, parameters: result.parameters)
            let (fp32Loss, fp32Gradient) = lossAndGradient(mid, .fp32)
            let (bf16Loss, bf16Gradient) = lossAndGradient(mid, .bf16)
            XCTAssertEqual(bf16Loss, fp32Loss, accuracy: 1e-2 * fp32Loss, "\(c.architecture)")
            var worst = 0.0
            for spec in mid.tensors {
                let reference = fp32Gradient[spec.range]
                let norm = reference.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                if norm == 0 { continue }
                let error = bf16Gradient.withUnsafeBufferPointer { normRelativeError($0.baseAddress! + spec.offset, reference) }
                worst = max(worst, error)
                XCTAssertLessThanOrEqual(error, 5e-2, "\(c.architecture) \(spec.name)")
            }
            print(String(format: "%@ bf16 vs fp32 at m = 0.4: loss %.3e relative, worst gradient tensor %.3e", "\(c.architecture)",
                         abs(bf16Loss - fp32Loss) / fp32Loss, worst))
        }
    }

    /// A model in the middle of a ramp cannot grow again, and says why.
    func testGrowingDuringARampIsRefused() throws {
        var config = TrainedTiny.config
        config.ramp = GrowthRamp(length: 4, done: 1, oldWidth: 32, oldHeads: 2, oldFFN: 128, insertedLayers: [])
        XCTAssertThrowsError(try GrowthPlan(layers: 3, width: 32, heads: 2).validate(source: config)) { error in
            XCTAssertTrue("\(error)".contains("masked ramp (1 of 4 updates done)"), "\(error)")
        }
    }
}
