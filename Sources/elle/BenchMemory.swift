import ArgumentParser
import Communication
import Foundation
import Model
import Tensors
import Training

/// `elle bench memory`: peak resident memory per rank of real training steps, with or without
/// ZeRO-1, beside the training state each rank holds. One mode per job, since a process's peak
/// (VmHWM) only grows: run it once with --zero 0 and once with --zero 1.
struct BenchMemory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "Peak resident memory per rank of training steps, and the state each rank holds.",
        discussion: """
            Run under mpirun (e.g. mpirun -n 2 --bind-to none elle bench memory --layers 12 --width 768 \
            --heads 12 --zero 1). Model and batch options are `elle bench`'s own; --batch is per rank. \
            Trains --steps updates on random tokens (forward, backward, gradient exchange, AdamW), then \
            reports every rank's peak resident set size (VmHWM) and the state it holds: parameters and \
            gradient (4 bytes per parameter each), Adam's moments (8, or 8 / ranks with --zero 1) and, \
            under --precision bf16, the weights' bf16 copy (2). scripts/zero_memory.sh compares the modes.
            """)

    /// Supplies the model shape, batch, --threads, --steps and --json.
    @ParentCommand var bench: Bench

    @Option(help: "ZeRO stage: 0 or 1.") var zero: Int = 0

    func validate() throws {
        if zero != 0 && zero != 1 { throw ValidationError("--zero must be 0 or 1 (got \(zero))") }
    }

    func run() throws {
        let communicator = try makeCommunicator()
        try Job.run(communicator) { try measure(communicator) }
    }

    func measure(_ c: Communicator) throws {
        let threads = Runtime.configureThreads(bench.compute.threads, ranksOnThisHost: c.localSize, quiet: !c.isRoot)
        let precision = bench.compute.precision ?? .fp32
        let config = ModelConfig(architecture: .gpt, layers: bench.layers, width: bench.width, heads: bench.heads,
                                 vocab: bench.vocab, context: bench.seq, dropout: 0)
        var rng = Xoshiro256(seed: 11)
        let windows = bench.batch * c.size * 4
        let train = Buffer<Int32>((0..<(windows * bench.seq + 1)).map { _ in Int32(rng.nextInt(below: bench.vocab)) })
        let valid = Buffer<Int32>((0..<(bench.seq + 1)).map { _ in Int32(rng.nextInt(below: bench.vocab)) })
        var options = TrainingOptions(batch: bench.batch, seq: bench.seq, steps: 1_000_000,
                                      schedule: LearningRateSchedule(kind: .constant, peak: 1e-5), dataPath: "random tokens")
        options.zero = zero
        options.precision = precision
        let before = peakResidentBytes()
        let trainer = try Trainer(model: try GPT(config: config, seed: 1), options: options, train: train, valid: valid, communicator: c)
        trainer.replicaCheckEvery = 0
        let setup = try c.allGather(Int64(peakResidentBytes()), label: "set-up memory gather")
        var seconds: [Double] = []
        for _ in 0..<bench.steps { seconds.append(try trainer.trainStep().seconds) }
        let peaks = try c.allGather(Int64(peakResidentBytes()), label: "peak memory gather")
        guard c.isRoot else { return }
        let n = trainer.model.parameterCount
        let momentFloats = trainer.optimizer.m.count + trainer.optimizer.v.count
        let state: [String: Int] = ["parameters": 4 * n, "gradients": 4 * n, "moments": 4 * momentFloats,
                                    "bf16_copy": precision == .bf16 ? 2 * n : 0]
        let report: [String: Any] = [
            "ranks": c.size, "threads": threads, "zero": zero, "precision": precision.rawValue,
            "layers": bench.layers, "width": bench.width, "vocab": bench.vocab, "seq": bench.seq, "batch": bench.batch,
            "parameters": n, "steps": bench.steps, "median_step_seconds": seconds.sorted()[seconds.count / 2],
            "peak_rss_bytes": peaks.map(Int.init), "peak_rss_after_setup_bytes": setup.map(Int.init), "rss_before_model_bytes": before,
            "state_bytes_per_rank": state, "state_total_bytes_per_rank": state.values.reduce(0, +),
        ]
        if bench.json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
        print("model \(bench.layers)/\(bench.width), \(n) parameters, \(c.size) rank(s), zero \(zero), \(precision.rawValue)")
        print("state per rank: parameters \(mb(state["parameters"]!)), gradients \(mb(state["gradients"]!)), moments \(mb(state["moments"]!))"
              + (precision == .bf16 ? ", bf16 copy \(mb(state["bf16_copy"]!))" : ""))
        print("peak RSS per rank: " + peaks.enumerated().map { "rank \($0.offset) \(mb(Int($0.element)))" }.joined(separator: ", ")
              + " (after set-up, before training: " + setup.map { mb(Int($0)) }.joined(separator: ", ") + ")")
    }
}
