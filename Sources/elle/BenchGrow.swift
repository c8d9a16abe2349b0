import ArgumentParser
import Communication
import Foundation
import Model
import Tensors
import Training

/// `elle bench grow`: times one growth event on a randomly initialized model, as a run does it:
/// rank 0 grows, and under mpirun broadcasts to the other ranks, which verify what they received.
struct BenchGrow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grow",
        abstract: "Time a growth event (depth, width, noise, and moments when carried) on a random model.",
        discussion: """
            Shapes are LAYERS/WIDTH/HEADS; the default is the last step of the ELLE reference plan, \
            11/704/11 -> 12/768/12. --model, --vocab, --threads and --json are `elle bench`'s own options \
            and mean the same here; with the GPT-2 vocabulary and 512 positions \
            (elle bench grow --vocab 50257 --context 512) the grown model has 124M parameters. \
            Under mpirun (e.g. mpirun -n 2 elle bench grow) rank 0 grows and broadcasts the grown \
            model to the other ranks, which hash what they received and compare with rank 0, as \
            `elle train --grow-at` does; grow, broadcast and verification are timed apart. \
            Reports the best and median of --repeats timed growths (each phase: the slowest rank).
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

    func validate() throws {
        let a = try parseShape(from, "--from")
        _ = try parseShape(to, "--to")
        if a.width % a.heads != 0 { throw ValidationError("--from: heads must divide the width (got \(from))") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if context < 1 { throw ValidationError("--context must be positive") }
    }

    func run() throws {
        let a = try parseShape(from, "--from"), b = try parseShape(to, "--to")
        let config = ModelConfig(architecture: bench.architecture, layers: a.layers, width: a.width, heads: a.heads,
                                 vocab: bench.vocab, context: context, dropout: 0)
        let plan = GrowthPlan(layers: b.layers, width: b.width, heads: b.heads, depthMode: depthMode, source: source,
                              noise: noise, noiseScope: noiseScope, moments: moments)
        do {
            try plan.validate(source: config)
        } catch let error as GrowthPlanError {
            throw ValidationError("--to \(to) cannot grow --from \(from): \(error.field) \(error.message)")
        }
        let communicator = try makeCommunicator()
        try Job.run(communicator) { try measure(config: config, plan: plan, communicator: communicator) }
    }

    /// Times `repeats` growth events as a run does them (`GrowthBroadcast`): rank 0 grows, every
    /// rank receives and verifies. Each phase's time is the slowest rank's.
    func measure(config: ModelConfig, plan: GrowthPlan, communicator c: Communicator) throws {
        let threads = Runtime.configureThreads(bench.compute.threads, ranksOnThisHost: c.localSize, quiet: !c.isRoot)
        // Only rank 0 holds the source model (and moments); the others receive the grown one.
        var parameters = FloatBuffer(count: 0)
        var adam: (m: FloatBuffer, v: FloatBuffer)?
        if c.isRoot {
            parameters = try makeModel(config: config, seed: 1).parameters
            if moments == .carry {
                let m = FloatBuffer(count: parameters.count), v = FloatBuffer(count: parameters.count)
                m.copy(from: parameters)
                for i in 0..<v.count { v[i] = m[i] * m[i] }
                adam = (m, v)
            }
        }
        var phases: [[Double]] = []  // per repeat: grow, broadcast, verify, total
        var grown: ReceivedGrowth?
        for _ in 0..<repeats {
            grown = nil  // free the previous result before timing the next
            try c.barrier(label: "growth benchmark barrier")
            let start = DispatchTime.now().uptimeNanoseconds
            let result = try GrowthBroadcast.grow(parameters: parameters, config: config, moments: adam, plan: plan,
                                                  communicator: c, what: "in the benchmark")
            var times = [result.growSeconds, result.broadcastSeconds, result.verifySeconds,
                         Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9]
            try c.allReduce(&times, count: times.count, .max, label: "growth benchmark times")
            phases.append(times)
            grown = result
        }
        guard c.isRoot, let result = grown else { return }
        func best(_ k: Int) -> Double { phases.map { $0[k] }.min()! }
        func median(_ k: Int) -> Double { phases.map { $0[k] }.sorted()[phases.count / 2] }
        let bytes = Double(result.buffers.reduce(0) { $0 + $1.count } * 4)
        let peakMB = Double(peakResidentBytes()) / 1e6
        if bench.json {
            var fields: [String: Any] = [
                "from": from, "to": to, "vocab": bench.vocab, "context": context, "threads": threads, "ranks": c.size,
                "depth_mode": depthMode.rawValue, "source": source.rawValue, "noise": Double(noise),
                "noise_scope": noiseScope.rawValue, "moments": moments.rawValue,
                "parameters_from": config.parameterCount, "parameters_to": result.config.parameterCount,
                "repeats": repeats, "written_gb_per_second": bytes / best(0) / 1e9, "peak_rss_mb": peakMB,
                "xxh64": String(format: "%016llx", result.hash),
            ]
            for (k, name) in ["grow", "broadcast", "verify", "total"].enumerated() {
                fields["\(name)_ms_best"] = best(k) * 1000
                fields["\(name)_ms_median"] = median(k) * 1000
            }
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("grow \(config) -> \(result.config)")
            print(String(format: "parameters %.2fM -> %.2fM; depth %@, width %@, noise %g on %@, moments %@; %d rank(s), %d thread(s) per rank",
                         Double(config.parameterCount) / 1e6, Double(result.config.parameterCount) / 1e6,
                         depthMode.rawValue, source.rawValue, noise, noiseScope.rawValue, moments.rawValue, c.size, threads))
            func line(_ name: String, _ k: Int, _ extra: String = "") {
                print(String(format: "%@ best %.1f ms, median %.1f ms", name, best(k) * 1000, median(k) * 1000) + extra)
            }
            line("grow on rank 0:     ", 0, String(format: " (%.2f GB/s written)", bytes / best(0) / 1e9))
            line("broadcast:          ", 1, c.size > 1 ? String(format: " (%.0f MB to %d rank(s))", bytes / 1e6, c.size - 1) : " (one rank: nothing to send)")
            line("verify (XXH64):     ", 2, String(format: ", xxh64 %016llx equal on %d rank(s)", result.hash, c.size))
            line("total:              ", 3, String(format: " of %d; peak RSS on rank 0 %.0f MB", repeats, peakMB))
        }
    }
}
