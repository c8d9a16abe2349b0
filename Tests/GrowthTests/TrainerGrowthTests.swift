import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// `Trainer.grow` in one process: what it replaces, what it keeps, and that training goes on.
/// (Several ranks: Tests/CommunicationTests/GrowthJobTests.swift.)
final class TrainerGrowthTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    /// A trainer on the trained tiny model with 2 micro-batches per update, after `steps` updates.
    func trainer(steps: Int, growth: ScheduledGrowth? = nil) throws -> Trainer {
        var options = TrainedTiny.options(steps: 40, lr: 1e-3)
        options.accumulation = 2
        options.evalBatches = 4
        options.growth = growth
        let model = try GPT(config: TrainedTiny.config, parameters: TrainedTiny.parameters())
        let trainer = try Trainer(model: model, options: options, train: TrainedTiny.corpus.train, valid: TrainedTiny.corpus.valid)
        for _ in 0..<steps { _ = try trainer.trainStep() }
        return trainer
    }

    /// An exact growth (identity layers, 2-fold round-robin width, no noise) keeps the validation
    /// loss; the step, the data position and the tokens seen carry on; Adam restarts; the next
    /// updates (which need the new gradient-sum buffer) give finite, falling losses.
    func testExactGrowthKeepsTheLossAndTrainingContinues() throws {
        let trainer = try trainer(steps: 5)
        let before = try XCTUnwrap(try trainer.evaluate())
        let position = try trainer.gatherStateForTest()
        XCTAssertEqual(position.count, 1, "one rank, one loader position")
        XCTAssertNotEqual(position, [LoaderPosition()], "5 updates have moved the data position")
        let plan = GrowthPlan(layers: 4, width: 64, heads: 4, depthMode: .identity, source: .roundRobin, noise: 0)
        let grown = try trainer.grow(plan)
        let after = try XCTUnwrap(try trainer.evaluate())
        print(String(format: "exact growth inside a run: valid loss %.7f -> %.7f", before, after))
        XCTAssertEqual(Double(after), Double(before), accuracy: 1e-5 * Double(before))
        XCTAssertEqual(trainer.model.config.layers, 4)
        XCTAssertEqual(trainer.model.config.width, 64)
        XCTAssertEqual(trainer.model.config.layerOrigins, [0, 0, 1, 1])
        XCTAssertTrue(trainer.model.parameters === grown.parameters)
        XCTAssertEqual(trainer.step, 5)
        XCTAssertEqual(try trainer.gatherStateForTest(), position)
        XCTAssertEqual(trainer.optimizer.step, 0)
        XCTAssertEqual(trainer.optimizer.m.count, trainer.model.parameterCount)
        XCTAssertEqual(sumOfSquares(trainer.optimizer.m.pointer, count: trainer.optimizer.m.count), 0)
        XCTAssertNotEqual(grown.hash, 0)
        XCTAssertEqual(grown.hash, XXH64.hash(trainer.model.parameters.rawBytes))

        var losses: [Float] = []
        for _ in 0..<10 { losses.append(try trainer.trainStep().loss) }
        XCTAssertTrue(losses.allSatisfy(\.isFinite), "\(losses)")
        XCTAssertEqual(trainer.step, 15)
        XCTAssertLessThan(try XCTUnwrap(try trainer.evaluate()), after, "validation loss should fall after growth")
    }

    /// With carried moments the grown parameters and both moments are exactly what `Growth.grow`
    /// makes of the trainer's state, and Adam's step count is kept.
    func testCarriedMomentsAreTheGrownMoments() throws {
        let trainer = try trainer(steps: 4)
        let plan = GrowthPlan(layers: 3, width: 48, heads: 3, moments: .carry, seed: 9)
        let expected = try Growth.grow(parameters: trainer.model.parameters, config: trainer.model.config, plan: plan,
                                       moments: (trainer.optimizer.m, trainer.optimizer.v))
        let grown = try trainer.grow(plan)
        XCTAssertEqual(trainer.model.config, expected.config)
        XCTAssertEqual(trainer.optimizer.step, 4)
        let pairs = [(trainer.model.parameters, expected.parameters), (trainer.optimizer.m, expected.moments!.m),
                     (trainer.optimizer.v, expected.moments!.v)]
        for (name, (actual, wanted)) in zip(["parameters", "m", "v"], pairs) {
            XCTAssertEqual(actual.count, wanted.count)
            XCTAssertTrue(bitIdentical(actual.pointer, wanted.pointer, actual.count), "\(name) differs")
        }
        XCTAssertGreaterThan(sumOfSquares(trainer.optimizer.m.pointer, count: trainer.optimizer.m.count), 0)
        XCTAssertNotNil(grown.moments)
        XCTAssertTrue(try trainer.trainStep().loss.isFinite)
    }

    /// A scheduled growth happens once, between update `step` and the next.
    func testScheduledGrowthHappensOnceAtItsStep() throws {
        let plan = GrowthPlan(layers: 3, width: 32, heads: 2)
        let trainer = try trainer(steps: 0, growth: ScheduledGrowth(step: 2, plan: plan))
        var grownAt: [Int] = []
        for _ in 0..<4 {
            if try trainer.growIfDue() != nil { grownAt.append(trainer.step) }
            XCTAssertNil(try trainer.growIfDue(), "a second call at the same step must not grow again")
            _ = try trainer.trainStep()
        }
        XCTAssertEqual(grownAt, [2])
        XCTAssertEqual(trainer.model.config.layers, 3)
    }

    /// A plan that does not fit the model is refused naming the field, and the model is kept.
    func testBadPlanIsRefusedAndTheModelKept() throws {
        let trainer = try trainer(steps: 1)
        let model = trainer.model
        XCTAssertThrowsError(try trainer.grow(GrowthPlan(layers: 1, width: 32, heads: 2))) { error in
            XCTAssertTrue("\(error)".contains("cannot grow the model after update 1"), "\(error)")
            XCTAssertTrue("\(error)".contains("layers cannot shrink"), "\(error)")
        }
        XCTAssertTrue(trainer.model === model)
        XCTAssertTrue(try trainer.trainStep().loss.isFinite)
    }
}

extension Trainer {
    /// The loader positions (one per rank), for comparing before and after growth. Throws rather
    /// than answering [] on failure, so two failed reads cannot compare equal.
    func gatherStateForTest() throws -> [LoaderPosition] { try gatherState().loaders }
}
