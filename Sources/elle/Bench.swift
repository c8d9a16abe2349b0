import ArgumentParser
import Foundation
import Model
import Tensors
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time full training steps (forward, backward, AdamW) on random tokens.",
        discussion: """
            GFLOP/s are counted as ../shared/anchors/torch_gpt_bench.py counts them: \
            6 * parameters * tokens + 12 * L * D * T * tokens per step. The SGEMM rate is \
            measured in the same run, on the same threads, at 1024^3. \
            `elle bench tokenizer` times the BPE tokenizer instead.
            """,
        subcommands: [TokenizerBench.self])

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
    }

    func run() throws {
        let threads = Runtime.configureThreads(compute.threads)
        let config = ModelConfig(layers: layers, width: width, heads: heads, vocab: vocab, context: seq, dropout: 0)
        let model = try GPT(config: config, seed: 1)
        let optimizer = AdamW(tensors: model.layout.tensors, count: model.parameterCount, settings: AdamWSettings())
        var rng = Xoshiro256(seed: 7)
        let n = batch * seq
        let tokens = Buffer<Int32>((0..<n).map { _ in Int32(rng.nextInt(below: vocab)) })
        let targets = Buffer<Int32>((0..<n).map { _ in Int32(rng.nextInt(below: vocab)) })

        func step() -> Float {
            model.zeroGradients()
            let loss = model.forward(tokens: tokens.pointer, targets: targets.pointer, batch: batch, seq: seq)
            model.backward()
            optimizer.update(parameters: model.parameters, gradients: model.gradients, learningRate: 1e-4)
            return loss
        }
        for _ in 0..<2 { _ = step() }
        var times: [Double] = []
        var loss: Float = 0
        for _ in 0..<steps {
            let start = DispatchTime.now().uptimeNanoseconds
            loss = step()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let stepSeconds = times.reduce(0, +) / Double(times.count)
        let params = model.parameterCount
        let flops = 6.0 * Double(params) * Double(n) + 12.0 * Double(layers * width * seq) * Double(n)
        let gflops = flops / stepSeconds / 1e9
        let sgemm = measureSGEMM(size: 1024, repeats: 5)
        let peakMemory = Double(peakResidentBytes()) / 1e6

        if json {
            let fields: [String: Any] = [
                "layers": layers, "width": width, "heads": heads, "vocab": vocab, "seq": seq, "batch": batch,
                "threads": threads, "steps": steps, "parameters": params,
                "step_ms": stepSeconds * 1000, "tokens_per_second": Double(n) / stepSeconds,
                "gflops": gflops, "sgemm_gflops": sgemm, "sgemm_share": gflops / sgemm,
                "blas_kernel": BLASInfo.coreName, "loss": Double(loss), "peak_rss_mb": peakMemory,
            ]
            let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "elle L%d D%d H%d V%d T%d B%d threads=%d params=%.2fM step=%.1fms tok/s=%.0f GFLOP/s=%.1f",
                         layers, width, heads, vocab, seq, batch, threads, Double(params) / 1e6,
                         stepSeconds * 1000, Double(n) / stepSeconds, gflops))
            print(String(format: "SGEMM 1024^3 on %d thread(s): %.1f GFLOP/s (OpenBLAS kernel %@); step at %.0f%% of it; peak RSS %.0f MB",
                         threads, sgemm, BLASInfo.coreName, 100 * gflops / sgemm, peakMemory))
        }
    }

    /// GFLOP/s of elle's gemm (OpenBLAS split across elle's threads) at size^3, best of `repeats`.
    func measureSGEMM(size: Int, repeats: Int) -> Double {
        let a = FloatBuffer(count: size * size), b = FloatBuffer(count: size * size), c = FloatBuffer(count: size * size)
        var rng = Xoshiro256(seed: 3)
        for i in 0..<(size * size) { a[i] = rng.nextFloat() - 0.5; b[i] = rng.nextFloat() - 0.5 }
        var best = Double.infinity
        for _ in 0..<(repeats + 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            gemm(transA: false, transB: false, m: size, n: size, k: size, a.pointer, lda: size,
                 b.pointer, ldb: size, beta: 0, c.pointer, ldc: size)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * Double(size * size * size) / best / 1e9
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
