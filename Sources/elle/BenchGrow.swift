import ArgumentParser
import Foundation
import Model
import Tensors

/// `elle bench grow`: times one growth event on a randomly initialized model.
struct BenchGrow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grow",
        abstract: "Time a growth event (depth, width, noise, and moments when carried) on a random model.",
        discussion: """
            Shapes are LAYERS/WIDTH/HEADS; the default is the last step of the ELLE reference plan, \
            11/704/11 -> 12/768/12. --vocab, --threads and --json are `elle bench`'s own options \
            and mean the same here; with the GPT-2 vocabulary and 512 positions \
            (elle bench grow --vocab 50257 --context 512) the grown model has 124M parameters. \
            Reports the best and median of --repeats timed growths.
            """)

    /// Supplies --vocab, --threads and --json (the parent parses options of the same name).
    @ParentCommand var bench: Bench

    @Option(help: "Source shape LAYERS/WIDTH/HEADS.") var from: String = "11/704/11"
    @Option(help: "Grown shape LAYERS/WIDTH/HEADS.") var to: String = "12/768/12"
    @Option(help: "Positions (context length).") var context: Int = 512
    @Option(help: "copy or identity.") var depthMode: GrowthPlan.DepthMode = .copy
    @Option(help: "random or round-robin.") var source: GrowthPlan.Source = .random
    @Option(help: "Noise standard deviation.") var noise: Float = 0.01
    @Option(help: "copies or all.") var noiseScope: GrowthPlan.NoiseScope = .copies
    @Option(help: "reset or carry (carry also maps both Adam moments).") var moments: GrowthPlan.Moments = .reset
    @Option(help: "Timed growths.") var repeats: Int = 3

    static func shape(_ text: String, _ flag: String) throws -> (layers: Int, width: Int, heads: Int) {
        let parts = text.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 3, parts.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("\(flag) must be LAYERS/WIDTH/HEADS, e.g. 12/768/12 (got \(text))")
        }
        return (parts[0], parts[1], parts[2])
    }

    func validate() throws {
        let a = try Self.shape(from, "--from")
        _ = try Self.shape(to, "--to")
        if a.width % a.heads != 0 { throw ValidationError("--from: heads must divide the width (got \(from))") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if context < 1 { throw ValidationError("--context must be positive") }
    }

    func run() throws {
        let threads = Runtime.configureThreads(bench.compute.threads)
        let vocab = bench.vocab, json = bench.json
        let a = try Self.shape(from, "--from"), b = try Self.shape(to, "--to")
        let config = ModelConfig(layers: a.layers, width: a.width, heads: a.heads, vocab: vocab, context: context, dropout: 0)
        let plan = GrowthPlan(layers: b.layers, width: b.width, heads: b.heads, depthMode: depthMode, source: source,
                              noise: noise, noiseScope: noiseScope, moments: moments)
        do {
            try plan.validate(source: config)
        } catch let error as GrowthPlanError {
            throw ValidationError("--to \(to) cannot grow --from \(from): \(error.field) \(error.message)")
        }
        let model = try GPT(config: config, seed: 1)
        var adam: (m: FloatBuffer, v: FloatBuffer)?
        if moments == .carry {
            let m = FloatBuffer(count: model.parameterCount), v = FloatBuffer(count: model.parameterCount)
            m.copy(from: model.parameters)
            for i in 0..<v.count { v[i] = m[i] * m[i] }
            adam = (m, v)
        }
        var times: [Double] = []
        var grown: GrowthResult?
        for _ in 0..<repeats {
            grown = nil  // free the previous result before timing the next
            let start = DispatchTime.now().uptimeNanoseconds
            grown = try Growth.grow(parameters: model.parameters, config: config, plan: plan, moments: adam)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let result = grown!
        let best = times.min()!, median = times.sorted()[times.count / 2]
        let tensors = moments == .carry ? 3 : 1
        let bytes = Double(result.config.parameterCount * 4 * tensors)
        if json {
            let fields: [String: Any] = [
                "from": from, "to": to, "vocab": vocab, "context": context, "threads": threads,
                "depth_mode": depthMode.rawValue, "source": source.rawValue, "noise": Double(noise),
                "noise_scope": noiseScope.rawValue, "moments": moments.rawValue,
                "parameters_from": config.parameterCount, "parameters_to": result.config.parameterCount,
                "grow_ms_best": best * 1000, "grow_ms_median": median * 1000, "repeats": repeats,
                "written_gb_per_second": bytes / best / 1e9, "peak_rss_mb": Double(peakResidentBytes()) / 1e6,
            ]
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("grow \(config) -> \(result.config)")
            print(String(format: "parameters %.2fM -> %.2fM; depth %@, width %@, noise %g on %@, moments %@; %d thread(s)",
                         Double(config.parameterCount) / 1e6, Double(result.config.parameterCount) / 1e6,
                         depthMode.rawValue, source.rawValue, noise, noiseScope.rawValue, moments.rawValue, threads))
            print(String(format: "grow time: best %.1f ms, median %.1f ms of %d (%.2f GB/s written); peak RSS %.0f MB",
                         best * 1000, median * 1000, repeats, bytes / best / 1e9, Double(peakResidentBytes()) / 1e6))
        }
    }
}
