import ArgumentParser
import Foundation
import Model
import Tensors
import Training

struct Grow: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Grow a checkpoint's model in depth and width (ELLE), keeping what it knows.",
        discussion: """
            Depth first: --depth-mode copy inserts copies of existing layers right after them \
            (ELLE: every original once before any twice; changes the function), identity inserts \
            blocks whose attention and MLP outputs are zero (exact), stack repeats the whole \
            stack (G_stack). Then width: new residual \
            dimensions, heads and FFN units copy old ones (--source), with divisions that keep \
            the function (exact with k-fold round-robin growth; close otherwise), plus \
            symmetry-breaking noise. With --ramp N every new unit (layer, dimension, head, FFN \
            unit) enters through a mask going from 0 to 1 over N updates (MSG): exact at the \
            growth for GPT and BERT, old weights undivided. The grown checkpoint keeps the run's state: train it with \
            `elle train --init-from OUT` (fresh run) or, when --out is a folder, \
            `elle train --out FOLDER --resume`. See docs/GROWTH.md.
            """)

    @Option(help: "Checkpoint file, or a run folder (its newest checkpoint).") var from: String
    @Option(help: "Checkpoint file to write; or a folder, which gets step-NNNNNNNN.ckpt and a `latest` pointer.")
    var out: String
    @Option(help: "Layers of the grown model (default: unchanged).") var layers: Int?
    @Option(help: "Residual width (default: unchanged).") var width: Int?
    @Option(help: "Attention heads (default: width / head dimension, which growth keeps fixed).") var heads: Int?
    @Option(help: "MLP width (default: the same ffn/width ratio).") var ffn: Int?
    @Option(help: "How inserted layers start: copy (ELLE), identity, or stack (G_stack).") var depthMode: GrowthPlan.DepthMode = .copy
    @Option(help: "Which old unit a new one copies: random (ELLE) or round-robin (i mod old size).")
    var source: GrowthPlan.Source = .random
    @Option(help: "Standard deviation of the symmetry-breaking noise (0: none).") var noise: Float = 0.01
    @Option(help: "Where the noise goes: copies (entries of new units) or all (every entry).")
    var noiseScope: GrowthPlan.NoiseScope = .copies
    @Option(help: "Adam moments: reset (the optimizer restarts) or carry (mapped with the growth).")
    var moments: GrowthPlan.Moments = .reset
    @Option(help: "Seed for the layer choice, the index maps and the noise.") var seed: UInt64 = 1
    @Option(help: "Masked ramp: the new units fade in over this many updates of the continued run (default: none).")
    var ramp: Int?
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1 (got \(layers))") }
        if let width, width < 1 { throw ValidationError("--width must be at least 1 (got \(width))") }
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1 (got \(heads))") }
        if let ramp, ramp < 1 { throw ValidationError("--ramp must be at least 1 update (got \(ramp))") }
        if !(noise >= 0 && noise.isFinite) { throw ValidationError("--noise must be a finite standard deviation >= 0 (got \(noise))") }
    }

    func run() throws {
        _ = Runtime.configureThreads(compute.threads)
        let (read, path) = try RunFolder.read(from)
        let saved = try read.assemblingMomentShards(path: path)  // a ZeRO-1 checkpoint's moments, put together
        let c = saved.config
        let newWidth = width ?? c.width
        let plan = GrowthPlan(layers: layers ?? c.layers, width: newWidth, heads: heads ?? newWidth / c.headDim, ffn: ffn,
                              depthMode: depthMode, source: source, noise: noise, noiseScope: noiseScope,
                              moments: moments, seed: seed, ramp: ramp)
        do {
            try plan.validate(source: c)
        } catch let error as GrowthPlanError {
            throw CommandError("cannot grow \(path) (\(c)): \(error.field) \(error.message)")
        }

        let start = DispatchTime.now().uptimeNanoseconds
        let grown: Checkpoint, growth: GrowthResult
        do {
            (grown, growth) = try saved.grown(by: plan)
        } catch let error as GrowthPlanError {
            throw CommandError("cannot grow \(path): \(error.field) \(error.message)")
        }
        let growSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9

        var target = out
        var isDirectory: ObjCBool = false
        let isFolder = out.hasSuffix("/") || (FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) && isDirectory.boolValue)
        if isFolder {
            target = try RunFolder(out).write(grown, name: RunFolder.stepCheckpointName(grown.state.step))
        } else {
            try grown.write(to: target)
        }

        print("grew \(path)")
        print("  from \(c), \(formatCount(c.parameterCount)) parameters")
        print("    to \(grown.config), \(formatCount(grown.config.parameterCount)) parameters")
        for line in growth.describe(from: c, plan: plan) { print("  " + line) }
        print("  noise \(plan.noise) on \(plan.noiseScope == .copies ? "new copies" : "all tensors"); Adam moments \(plan.moments == .carry ? "carried (optimizer step \(grown.state.optimizerStep))" : "reset")")
        print(String(format: "  grown in %.0f ms; wrote %@ (step %d)", growSeconds * 1000, target, grown.state.step))
    }
}

extension GrowthPlan.DepthMode: ExpressibleByArgument {}
extension GrowthPlan.Source: ExpressibleByArgument {}
extension GrowthPlan.NoiseScope: ExpressibleByArgument {}
extension GrowthPlan.Moments: ExpressibleByArgument {}
