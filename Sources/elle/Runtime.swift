import Foundation
import Tensors

#if canImport(Glibc)
import Glibc
#endif

/// Process-wide setup shared by the subcommands.
enum Runtime {
    /// Configures elle's thread count: the flag, else OPENBLAS_NUM_THREADS, else the cores
    /// shared among the `ranksOnThisHost` ranks of an MPI job on this node. `quiet` (ranks
    /// other than 0) skips the OpenBLAS kernel advice.
    static func configureThreads(_ requested: Int?, ranksOnThisHost: Int = 1, quiet: Bool = false) -> Int {
        let fromEnvironment = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap(Int.init)
        let threads = requested ?? fromEnvironment ?? ProcessInfo.processInfo.activeProcessorCount / max(1, ranksOnThisHost)
        Parallel.configure(threads: max(1, threads))
        if !quiet, let advice = BLASInfo.kernelAdvice { warn(advice) }
        return Parallel.threads
    }

    /// Says once, on standard error, when `precision` will run slower than fp32 on this CPU
    /// (bf16 without AVX512_BF16). `quiet` (ranks other than 0) says nothing.
    static func announce(precision: Precision, quiet: Bool = false) {
        if precision == .bf16, !quiet, let advice = GemmRules.bf16Advice { warn(advice) }
    }

    /// Writes a line to standard error.
    static func warn(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Is standard output a terminal (progress bars) or a file/pipe (plain lines)?
    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) != 0 }

    static func flush() { fflush(stdout) }
}

/// A failure found while running a command (printed as "Error: ...", without the usage text).
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
