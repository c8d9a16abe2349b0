import ArgumentParser
import Corpus
import Foundation
import Model
import Tensors
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time full training steps (forward, backward, AdamW) on random tokens.",
        discussion: """
            GFLOP/s are counted as ../shared/anchors/torch_gpt_bench.py counts them: \
            6 * parameters * tokens + 12 * L * D * T * tokens per step. The report splits the step \
            into GEMM, attention, optimizer, conversion (mixed precision) and elementwise time, and \
            measures GEMM in the step's precision in the same run at the step's own shapes (each shape \
            timed alone) and at 1024^3. \
            `elle bench grow` times model growth; `elle bench comm` all-reduces and overlap under mpirun; `elle bench memory` peak memory per rank (ZeRO-1); \
            `elle bench tokenizer` the BPE tokenizer.
            """,
        subcommands: [BenchGrow.self, BenchComm.self, BenchMemory.self, TokenizerBench.self])

    @Option(name: .customLong("model"), help: "Architecture: gpt (next-token loss at every position) or bert (masked LM, 15% of positions predicted).")
    var architecture: Architecture = .gpt
    @Option(help: "Transformer blocks.") var layers: Int = 6
    @Option(help: "Residual width D.") var width: Int = 384
    @Option(help: "Attention heads.") var heads: Int = 6
    @Option(help: "Vocabulary size.") var vocab: Int = 16384
    @Option(help: "Sequence length.") var seq: Int = 128
    @Option(help: "Sequences per step.") var batch: Int = 8
    @Option(help: "Timed steps (after 2 warmup steps).") var steps: Int = 5
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if heads < 1 || width % heads != 0 { throw ValidationError("--heads must divide --width") }
        if steps < 1 { throw ValidationError("--steps must be at least 1") }
        if vocab < 2 || seq < 1 || batch < 1 || layers < 1 { throw ValidationError("sizes must be positive") }
        if architecture == .bert && vocab < 5 { throw ValidationError("--model bert needs --vocab of at least 5 (three ids play <|bos|>, <|mask|> and <|pad|>)") }
    }

    func run() throws {
        let threads = Runtime.configureThreads(compute.threads)
        let precision = compute.precision ?? .fp32
        Runtime.announce(precision: precision)
        let config = ModelConfig(architecture: architecture, layers: layers, width: width, heads: heads, vocab: vocab,
                                 context: seq, dropout: 0)
        let model = try makeModel(config: config, seed: 1)
        model.precision = precision
        let optimizer = AdamW(tensors: model.tensors, count: model.parameterCount, settings: AdamWSettings())
        var rng = Xoshiro256(seed: 7)
        let n = batch * seq
        let tokens = Buffer<Int32>((0..<n).map { _ in Int32(rng.nextInt(below: vocab)) })
        let targets = Buffer<Int32>((0..<n).map { _ in Int32(rng.nextInt(below: vocab)) })
        if architecture == .bert {
            // The last three ids play <|bos|>, <|mask|> and <|pad|>; one masking for every step.
            let v = Int32(vocab)
            for i in 0..<n { tokens[i] %= v - 3 }
            MaskedLM(beginToken: v - 1, maskToken: v - 2, padToken: v - 3, ordinaryTokens: v - 3)
                .makeSequences(tokens: tokens.pointer, targets: targets.pointer, batch: batch, seq: seq, key: 7)
        }

        func step() -> Float {
            model.zeroGradients()
            let loss = model.forward(tokens: tokens.pointer, targets: targets.pointer, batch: batch, seq: seq)
            model.backward()
            optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: 1e-4,
                             weightCopy: model.weightCopy)
            return loss
        }
        for _ in 0..<2 { _ = step() }

        Profiler.reset()
        Profiler.enabled = true
        var total = 0.0
        var loss: Float = 0
        for _ in 0..<steps {
            let start = DispatchTime.now().uptimeNanoseconds
            loss = step()
            total += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        Profiler.enabled = false
        let stepSeconds = total / Double(steps)
        var phases: [(String, Double)] = Profiler.Phase.allCases.map { ($0.name, Profiler.seconds($0) / Double(steps)) }
        phases.append(("elementwise", stepSeconds - phases.reduce(0) { $0 + $1.1 }))
        let gemmShapes = Array(Profiler.gemmCalls.prefix(Profiler.gemmCalls.count / steps))
        let peakMB = Double(peakResidentBytes()) / 1e6  // before the GEMM measurements allocate

        let params = model.parameterCount
        let flops = FLOPCount.trainingPerToken(config, parameters: params, seq: seq) * Double(n)
        let gflops = flops / stepSeconds / 1e9
        let shapesRate = GemmProbe.gflops(gemmShapes)
        let square = GemmProbe.gflops([Profiler.GemmShape(transA: false, transB: false, m: 1024, n: 1024, k: 1024,
                                                             precision: precision)])
        // The GEMM phase's own rate, and the step time it bounds: the step's products at the rate
        // they reach alone, plus everything else as measured.
        let gemmFlops = gemmShapes.reduce(0) { $0 + $1.flops }
        let gemmSeconds = Profiler.seconds(.gemm) / Double(steps)
        let boundSeconds = gemmFlops / (shapesRate * 1e9) + (stepSeconds - gemmSeconds)
        let activationMB = Double(model.activationCount(batch: batch, seq: seq)) * 4 / 1e6
        let stateMB = Double(4 * params) * 4 / 1e6 + Double(model.weightCopy == nil ? 0 : 2 * params) / 1e6 + activationMB
        let library = GemmRules.library(for: precision)
        let kernel = library == .oneDNN ? "oneDNN \(OneDNN.version) " + OneDNN.implementations.joined(separator: ", ")
            : "OpenBLAS \(BLASInfo.coreName)"

        if json {
            var fields: [String: Any] = [
                "model": architecture.rawValue, "layers": layers, "width": width, "heads": heads, "vocab": vocab, "seq": seq, "batch": batch,
                "threads": threads, "steps": steps, "parameters": params, "precision": precision.rawValue,
                "step_ms": stepSeconds * 1000, "tokens_per_second": Double(n) / stepSeconds,
                "gflops": gflops, "gemm_step_shapes_gflops": shapesRate, "gemm_1024_gflops": square,
                "share_of_gemm": gflops / shapesRate, "gemm_phase_gflops": gemmFlops / gemmSeconds / 1e9,
                "gemm_phase_share": gemmFlops / gemmSeconds / 1e9 / shapesRate, "bound_ms": boundSeconds * 1000,
                "backend": library.rawValue, "blas_kernel": BLASInfo.coreName, "onednn_version": OneDNN.version,
                "onednn_isa": OneDNN.isaName, "onednn_implementations": OneDNN.implementations, "cpu_features": Bench.cpuFeatures,
                "loss": Double(loss), "peak_rss_mb": peakMB, "model_state_mb": stateMB, "activation_mb": activationMB,
            ]
            if precision == .fp32 {
                // The names earlier scripts read.
                fields["sgemm_step_shapes_gflops"] = shapesRate
                fields["sgemm_1024_gflops"] = square
                fields["share_of_sgemm"] = gflops / shapesRate
            }
            for (name, seconds) in phases { fields["\(name)_ms"] = seconds * 1000 }
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print((architecture == .gpt ? "" : "\(architecture) ") + String(format: "elle L%d D%d H%d V%d T%d B%d threads=%d %@ params=%.2fM step=%.1fms tok/s=%.0f GFLOP/s=%.1f",
                         layers, width, heads, vocab, seq, batch, threads, precision.rawValue, Double(params) / 1e6,
                         stepSeconds * 1000, Double(n) / stepSeconds, gflops))
            print("phases: " + phases.map { String(format: "%@ %.1fms (%.0f%%)", $0.0, $0.1 * 1000, 100 * $0.1 / stepSeconds) }.joined(separator: ", "))
            print(String(format: "%@ GEMM (%@, %d thread(s)): %.1f GFLOP/s at this step's shapes, %.1f at 1024^3; "
                         + "step at %.0f%% of the step-shape rate; GEMM phase at %.1f GFLOP/s (%.0f%% of it)",
                         precision.rawValue, kernel, threads, shapesRate, square, 100 * gflops / shapesRate,
                         gemmFlops / gemmSeconds / 1e9, 100 * gemmFlops / gemmSeconds / 1e9 / shapesRate))
            print(String(format: "bound (products at the step-shape rate + the rest as measured): %.1fms; step at %.0f%% of the bound's speed",
                         boundSeconds * 1000, 100 * boundSeconds / stepSeconds))
            print(String(format: "memory: peak RSS %.0f MB; parameters + gradients + Adam moments%@ + activations (%.0f MB) %.0f MB (ratio %.2f)",
                         peakMB, model.weightCopy == nil ? "" : " + bf16 weights", activationMB, stateMB, peakMB / stateMB))
        }
    }

    /// The vector and matrix extensions this CPU reports (/proc/cpuinfo) that elle's libraries use.
    static var cpuFeatures: [String] {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        let wanted: Set<Substring> = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"]
        return flags.split(separator: " ").filter { wanted.contains($0) }.map(String.init).sorted()
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let digits = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return digits * 1024
    }
    return 0
}
