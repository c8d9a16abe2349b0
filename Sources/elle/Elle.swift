import ArgumentParser
import Model
import Tensors

@main
struct Elle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elle",
        abstract: "Lifelong pre-training of growing transformer language models.",
        subcommands: [Train.self, Sample.self, Eval.self, Bench.self, DataCommand.self, Grow.self, Export.self, Import.self,
                      FinetuneCommand.self, TeacherCacheCommand.self, MPICheck.self])
}

/// Model shape options of `train`.
struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "Architecture: gpt (causal LM) or bert (masked LM; needs prepared BPE data).")
    var architecture: Architecture = .gpt
    @Option(help: "Transformer blocks.") var layers: Int = 4
    @Option(help: "Residual width D.") var width: Int = 128
    @Option(help: "Attention heads (must divide the width).") var heads: Int = 4
    @Option(help: "MLP hidden width (default 4 x width).") var ffn: Int?
    @Option(help: "Maximum sequence length (default: --seq).") var context: Int?

    func validate() throws {
        if layers < 1 { throw ValidationError("--layers must be at least 1 (got \(layers))") }
        if width < 1 { throw ValidationError("--width must be at least 1 (got \(width))") }
        if heads < 1 || width % heads != 0 {
            throw ValidationError("--heads must divide --width (got \(heads) heads for width \(width))")
        }
        if let ffn, ffn < 1 { throw ValidationError("--ffn must be at least 1 (got \(ffn))") }
    }
}

extension Architecture: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// Threads for elle's kernels (OpenBLAS itself always runs single-threaded under elle) and the
/// number format of the model's matrix products.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads per process (default: OPENBLAS_NUM_THREADS when set, else all cores shared among the MPI ranks on this node).")
    var threads: Int?
    @Option(help: "Operands of the model's matrix products: fp32 (default), or bf16 (mixed precision: bf16 operands; float32 accumulation, weights, gradients and optimizer state; fast with AVX512_BF16). A resumed run keeps its own unless given.")
    var precision: Precision?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads))") }
    }
}
