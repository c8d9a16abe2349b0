import Corpus
import Foundation
import Model
import Tensors
import TestSupport
import Training
import XCTest

/// The plan value, ELLE's depth bookkeeping, and growth of checkpoints.
final class GrowthPlanTests: XCTestCase {
    override func setUp() { Parallel.configure(threads: 2) }

    let source = ModelConfig(layers: 6, width: 384, heads: 6, vocab: 100, context: 16)

    func assertRejected(_ plan: GrowthPlan, field: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try plan.validate(source: source), file: file, line: line) { error in
            guard let error = error as? GrowthPlanError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(error.field, field, "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(field), "\(error)", file: file, line: line)
        }
    }

    func testValidationNamesTheBadField() throws {
        try GrowthPlan(layers: 8, width: 512, heads: 8).validate(source: source)
        XCTAssertEqual(GrowthPlan(layers: 8, width: 512, heads: 8).target(source: source).ffn, 2048)
        assertRejected(GrowthPlan(layers: 4, width: 512, heads: 8), field: "layers")
        assertRejected(GrowthPlan(layers: 8, width: 320, heads: 5), field: "width")
        assertRejected(GrowthPlan(layers: 8, width: 500, heads: 10), field: "width")   // not a multiple of 64
        assertRejected(GrowthPlan(layers: 8, width: 512, heads: 16), field: "heads")   // head dim 32 != 64
        assertRejected(GrowthPlan(layers: 8, width: 512, heads: 4), field: "heads")    // shrinking
        assertRejected(GrowthPlan(layers: 8, width: 512, heads: 8, ffn: 1000), field: "ffn")
        assertRejected(GrowthPlan(layers: 8, width: 512, heads: 8, noise: -1), field: "noise")
        assertRejected(GrowthPlan(layers: 8, width: 512, heads: 8, noise: .nan), field: "noise")
    }

    /// The plan is Codable with defaults for everything but the shape (it will sit in a YAML
    /// stage plan); unknown enum values fail to decode.
    func testCodableWithDefaults() throws {
        let minimal = try JSONDecoder().decode(GrowthPlan.self, from: Data(#"{"layers": 8, "width": 512, "heads": 8}"#.utf8))
        XCTAssertEqual(minimal, GrowthPlan(layers: 8, width: 512, heads: 8))
        XCTAssertEqual(minimal.noise, 0.01)
        XCTAssertEqual(minimal.noiseScope, .copies)
        XCTAssertEqual(minimal.moments, .reset)
        XCTAssertEqual(minimal.depthMode, .copy)
        XCTAssertEqual(minimal.source, .random)
        XCTAssertNil(minimal.ramp)
        let full = GrowthPlan(layers: 12, width: 768, heads: 12, ffn: 3072, depthMode: .identity, source: .roundRobin,
                              noise: 0, noiseScope: .all, moments: .carry, seed: 42, ramp: 50)
        let encoded = try JSONEncoder().encode(full)
        XCTAssertTrue(String(decoding: encoded, as: UTF8.self).contains("\"round-robin\""))
        XCTAssertEqual(try JSONDecoder().decode(GrowthPlan.self, from: encoded), full)
        XCTAssertThrowsError(try JSONDecoder().decode(GrowthPlan.self, from: Data(#"{"layers": 8, "width": 512, "heads": 8, "depthMode": "pile"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(GrowthPlan.self, from: Data(#"{"layers": 8, "width": 512}"#.utf8)))
    }

    /// ELLE's rule over successive growths of the reference plan 6 -> 8 -> 10 -> 11 -> 12: after
    /// every event no original has two more copies than another, every copy sits next to its
    /// original, and 6 -> 12 ends as six adjacent pairs. 3 -> 8 copies every layer once before
    /// any twice. The lineage survives a checkpoint round trip in the config.
    func testELLEDepthRuleBookkeeping() throws {
        var config = ModelConfig(layers: 6, width: 64, heads: 1, vocab: 10, context: 4)
        XCTAssertNil(config.layerOrigins)
        for (event, layers) in [8, 10, 11, 12].enumerated() {
            let (map, origins) = DepthMap.elle(config: config, layers: layers, seed: UInt64(event + 7))
            XCTAssertEqual(map.sources.count, layers)
            XCTAssertEqual(map.inserted.filter { $0 }.count, layers - config.layers)
            XCTAssertEqual(map.sources.enumerated().filter { !map.inserted[$0.offset] }.map(\.element), Array(0..<config.layers),
                           "the existing layers keep their order")
            let counts = (0..<6).map { o in origins.filter { $0 == o }.count }
            XCTAssertLessThanOrEqual(counts.max()! - counts.min()!, 1, "origins \(origins)")
            XCTAssertEqual(origins, origins.sorted(), "copies sit next to their originals: \(origins)")
            config.layers = layers
            config.layerOrigins = origins
            let decoded = try JSONDecoder().decode(ModelConfig.self, from: try JSONEncoder().encode(config))
            XCTAssertEqual(decoded, config)
        }
        XCTAssertEqual(config.layerOrigins, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])

        let three = ModelConfig(layers: 3, width: 64, heads: 1, vocab: 10, context: 4)
        let (map, origins) = DepthMap.elle(config: three, layers: 8, seed: 1)
        XCTAssertEqual((0..<3).map { o in origins.filter { $0 == o }.count }.sorted(), [2, 3, 3])
        for (l, inserted) in map.inserted.enumerated() where inserted {
            XCTAssertEqual(origins[l - 1], origins[l], "inserted layer \(l) follows a layer of its origin")
            XCTAssertEqual(map.sources[l], origins[l], "a copy is made of the original layer")
        }
        // Different seeds pick different layers.
        let picks = Set((0..<8).map { DepthMap.elle(config: three, layers: 4, seed: $0).origins })
        XCTAssertGreaterThan(picks.count, 1)
        // Plain checkpoints do not mention lineage or normalization.
        let plain = String(decoding: try JSONEncoder().encode(three), as: UTF8.self)
        XCTAssertFalse(plain.contains("layerOrigins") || plain.contains("normalization"), plain)
    }

    /// Depth growth copies each source layer's tensors into its grown position; inserted layers get
    /// the selected tensors zeroed.
    func testDeepenCopiesTheRightLayers() throws {
        let config = ModelConfig(layers: 3, width: 16, heads: 2, vocab: 20, context: 4)
        let model = try GPT(config: config, seed: 2)
        let map = DepthMap(sources: [0, 1, 1, 2, 0], inserted: [false, false, true, false, true])
        var deepConfig = config
        deepConfig.layers = 5
        let (deep, grown) = try Growth.expand(model.parameters, config: config, depth: map, maps: .identity(deepConfig)) {
            $0.writesResidualBranch
        }
        XCTAssertEqual(grown, deepConfig)
        let big = try GPT(config: grown, parameters: deep)
        for (l, s) in map.sources.enumerated() {
            for name in ["ln1.weight", "attn.qkv.weight", "attn.proj.weight", "mlp.fc.bias", "mlp.proj.bias"] {
                let got = values(big, "blocks.\(l).\(name)")
                if map.inserted[l] && name.contains("proj") {
                    XCTAssertTrue(got.allSatisfy { $0 == 0 }, "blocks.\(l).\(name) zeroed")
                } else {
                    XCTAssertEqual(got, values(model, "blocks.\(s).\(name)"), "blocks.\(l).\(name)")
                }
            }
        }
        XCTAssertEqual(values(big, "wte"), values(model, "wte"))
        XCTAssertEqual(values(big, "lnf.bias"), values(model, "lnf.bias"))
    }

    /// Growing a checkpoint keeps its training state; moments are carried (optimizer step kept)
    /// or dropped (optimizer step 0); carrying without moments is an error naming them.
    func testCheckpointGrowth() throws {
        // A real trainer's checkpoint, with a step and moments of our own.
        let corpus = TrainedTiny.corpus
        let model = try GPT(config: Tiny.config(), seed: 1)
        let options = TrainingOptions(batch: 2, seq: 8, steps: 10, schedule: LearningRateSchedule(kind: .constant, peak: 1e-3),
                                      dataPath: sampleDataPath())
        var checkpoint = try Trainer(model: model, options: options, train: corpus.train, valid: corpus.valid).checkpoint()
        checkpoint.state.step = 7
        checkpoint.state.optimizerStep = 7
        let state = checkpoint.state
        let m = FloatBuffer(count: model.parameterCount), v = FloatBuffer(count: model.parameterCount)
        fillUniform(m.pointer, m.count, seed: 2)
        fillUniform(v.pointer, v.count, scale: 0.01, seed: 3)
        checkpoint.tensors = [("parameters", model.parameters), ("adam.m", m), ("adam.v", v)]

        let carried = try checkpoint.grown(by: GrowthPlan(layers: 3, width: 32, heads: 4, moments: .carry)).checkpoint
        XCTAssertEqual(carried.config.layers, 3)
        XCTAssertEqual(carried.config.width, 32)
        XCTAssertEqual(carried.config.layerOrigins?.count, 3)
        XCTAssertEqual(carried.state, state)
        XCTAssertEqual(carried.tensors.map(\.name), ["parameters", "adam.m", "adam.v"])
        XCTAssertTrue(carried.tensors.allSatisfy { $0.buffer.count == carried.config.parameterCount })

        let reset = try checkpoint.grown(by: GrowthPlan(layers: 2, width: 32, heads: 4)).checkpoint
        XCTAssertEqual(reset.tensors.map(\.name), ["parameters"])
        XCTAssertEqual(reset.state.optimizerStep, 0)
        XCTAssertEqual(reset.state.step, 7)
        XCTAssertNil(reset.config.layerOrigins, "no depth growth, no lineage")

        var bare = checkpoint
        bare.tensors = [("parameters", model.parameters)]
        XCTAssertThrowsError(try bare.grown(by: GrowthPlan(layers: 2, width: 32, heads: 4, moments: .carry))) { error in
            XCTAssertEqual((error as? GrowthPlanError)?.field, "moments", "\(error)")
        }
    }
}
