import ArgumentParser
import Communication
import Foundation
import Model
import Tensors
import Training

/// `elle mpi-check`: before a long run, checks that every rank of the job can reach the others
/// and that each collective the trainer uses gives exactly the expected values.
struct MPICheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi-check",
        abstract: "Check an MPI job: every rank reports, and each collective elle uses gives the expected values.",
        discussion: """
            Run it the way you run training, e.g. `cluster/launch.sh -n 4 -- elle mpi-check`. \
            Rank 0 prints where each rank runs and one line per check; the exit status is 0 only \
            if every check passed on every rank.
            """)

    @Option(help: "Elements per all-reduce and broadcast buffer.") var elements: Int = 10_007
    @Option(help: "Largest element count per MPI call while checking, so buffers are split into several calls (production uses 2^30).")
    var chunkElements: Int = 1000
    @Option(help: "Elements of the timed all-reduce (0: none).") var timedElements: Int = 4 << 20
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if timedElements < 0 { throw ValidationError("--timed-elements must not be negative") }
        if elements < 1 { throw ValidationError("--elements must be at least 1 (got \(elements))") }
        if chunkElements < 1 { throw ValidationError("--chunk-elements must be at least 1 (got \(chunkElements))") }
    }

    func run() throws {
        let communicator = try makeCommunicator(watchdogSeconds: parallel.watchdog)
        try Job.run(communicator) { try check(communicator) }
    }

    func check(_ c: Communicator) throws {
        try Job.printRanks(c)
        if c is MPICommunicator { MPICommunicator.chunkElements = chunkElements }
        let n = elements, w = c.size, r = c.rank
        var failures: [String] = []
        func expect(_ name: String, _ ok: Bool, _ detail: @autoclosure () -> String) {
            if !ok { failures.append("\(name): \(detail())") }
        }

        // All-reduce: sum, max, min in float32, float64 and int64, in place, split into chunks.
        // Values are small integers (float sums exact) or beyond 2^53 (int64 must stay int64).
        let triangle = w * (w + 1) / 2
        var sum = (0..<n).map { Float((r + 1) * ($0 % 7 + 1)) }
        try c.allReduce(&sum, count: n, .sum, label: "check float32 sum")
        let sumExpected = (0..<n).map { Float(triangle * ($0 % 7 + 1)) }
        expect("all-reduce float32 sum", sum == sumExpected, "wrong values")

        var maximum = (0..<n).map { Double((r * 5 + $0) % 13) }
        try c.allReduce(&maximum, count: n, .max, label: "check float64 max")
        var maximumExpected = [Double](repeating: -1, count: n)
        for other in 0..<w { for i in 0..<n { maximumExpected[i] = max(maximumExpected[i], Double((other * 5 + i) % 13)) } }
        expect("all-reduce float64 max", maximum == maximumExpected, "wrong values")

        let large = Int64(1) << 60
        var minimum = (0..<n).map { large + Int64((r * 3 + $0) % 11) }
        try c.allReduce(&minimum, count: n, .min, label: "check int64 min")
        var minimumExpected = [Int64](repeating: .max, count: n)
        for other in 0..<w { for i in 0..<n { minimumExpected[i] = min(minimumExpected[i], large + Int64((other * 3 + i) % 11)) } }
        expect("all-reduce int64 min", minimum == minimumExpected, "wrong values")

        let scale = Int64(1) << 40
        var total = (0..<n).map { scale * Int64(r + 1) + Int64($0) }
        try c.allReduce(&total, count: n, .sum, label: "check int64 sum")
        let totalExpected = (0..<n).map { scale * Int64(triangle) + Int64(w * $0) }
        expect("all-reduce int64 sum", total == totalExpected, "wrong values")

        // Non-blocking all-reduce: start, keep working, then wait.
        var pending = (0..<n).map { Float($0 % 5) * Float(r + 1) }
        try pending.withUnsafeMutableBufferPointer { p in
            let request = try c.startAllReduce(p.baseAddress!, count: n, .sum, label: "check non-blocking sum")
            var work = 0.0
            for i in 0..<100_000 { work += Double(i) }
            _ = try request.test()
            try request.wait()
            if work < 0 { print(work) }
        }
        let pendingExpected = (0..<n).map { Float($0 % 5) * Float(triangle) }
        expect("non-blocking all-reduce", pending == pendingExpected, "wrong values")

        // The gradient exchanges: tree sum (every rank) and tree reduce (onto each owner), over
        // float32 and bf16 wires. Every rank computes the expected bits from all ranks' values:
        // float32, the pairwise tree over rank order; bf16, each value rounded once, the tree in
        // float32, and (tree sum) the sum rounded to bf16.
        func contribution(_ rank: Int, _ i: Int) -> Float { Float((rank + 1) * (i % 97)) * 0.013 + 1 / 3 }
        func rounded(_ x: Float) -> Float {
            var value = x, bits = BF16(bits: 0), back: Float = 0
            BF16Convert.serial(&value, &bits, count: 1)
            BF16Convert.widenSerial(&bits, &back, count: 1)
            return back
        }
        func treeExpected(_ i: Int, wire: Precision, roundSum: Bool) -> Float {
            var values = (0..<w).map { wire == .bf16 ? rounded(contribution($0, i)) : contribution($0, i) }
            var step = 1
            while step < w {
                for k in stride(from: 0, to: w - step, by: 2 * step) { values[k] += values[k + step] }
                step *= 2
            }
            return wire == .bf16 && roundSum ? rounded(values[0]) : values[0]
        }
        for wire in Precision.allCases {
            var summed = (0..<n).map { contribution(r, $0) }
            try summed.withUnsafeMutableBufferPointer { p in
                try c.startTreeSum(p.baseAddress!, count: n, wire: wire, label: "check \(wire) tree sum").wait()
            }
            expect("tree sum over \(wire)", summed.map(\.bitPattern) == (0..<n).map { treeExpected($0, wire: wire, roundSum: true).bitPattern },
                   "wrong values")
            for root in Set([0, w - 1]).sorted() {
                var reduced = (0..<n).map { contribution(r, $0) }
                let before = reduced
                try reduced.withUnsafeMutableBufferPointer { p in
                    try c.startTreeReduce(p.baseAddress!, count: n, root: root, wire: wire, label: "check \(wire) tree reduce onto rank \(root)").wait()
                }
                let expected = r == root ? (0..<n).map { treeExpected($0, wire: wire, roundSum: false).bitPattern } : before.map(\.bitPattern)
                expect("tree reduce over \(wire) onto rank \(root)", reduced.map(\.bitPattern) == expected, "wrong values on rank \(r)")
            }
        }

        // Broadcast from the first and the last rank.
        for root in Set([0, w - 1]).sorted() {
            var values = (0..<n).map { Double(r * n + $0) + 0.5 }
            try c.broadcast(&values, count: n, root: root, label: "check broadcast from rank \(root)")
            let expected = (0..<n).map { Double(root * n + $0) + 0.5 }
            expect("broadcast from rank \(root)", values == expected, "wrong values")
        }

        // Gather and all-gather of small buffers, a barrier.
        let ranks = try c.allGather(Int64(r * r), label: "check all-gather")
        expect("all-gather", ranks == (0..<w).map { Int64($0 * $0) }, "got \(ranks)")
        let texts = try c.gather("rank \(r) " + String(repeating: "x", count: r), label: "check gather")
        if c.isRoot {
            expect("gather", texts == (0..<w).map { "rank \($0) " + String(repeating: "x", count: $0) }, "got \(texts)")
        }
        try c.barrier(label: "check barrier")

        // MPI's errors come back as Swift errors carrying MPI's message (a broadcast from a rank
        // that does not exist is refused by every rank alike).
        if c is MPICommunicator {
            var value = 1.0
            do {
                try c.broadcast(&value, count: 1, root: w, label: "check error reporting")
                expect("MPI error reporting", false, "a broadcast from rank \(w) of \(w) succeeded")
            } catch let error as MPIError {
                expect("MPI error reporting", error.call.hasPrefix("MPI_Ibcast") && !error.message.isEmpty, "\(error)")
                if c.isRoot { print("ok: a broadcast from rank \(w) of \(w) fails with: \(error)") }
            }
        }

        // The replica checks the trainer relies on must pass on equal data and name the rank
        // whose copy differs.
        var replica = [Float](repeating: 1.5, count: n)
        let hash = try replica.withUnsafeBytes { try c.verifyIdentical($0, what: "check buffers") }
        expect("replica hash (equal copies)", hash != 0, "zero hash")
        if w > 1 {
            if r == w - 1 { replica[n / 2] = 2.5 }
            do {
                try replica.withUnsafeBytes { _ = try c.verifyIdentical($0, what: "check buffers") }
                expect("replica hash (one copy differs)", false, "divergence not detected")
            } catch let error as JobError {
                expect("replica hash (one copy differs)", error.message.contains("rank \(w - 1) has"), error.message)
            }
            do {
                try c.verifySameFields([("batch", "4"), ("seed", r == w - 1 ? "2" : "1")], what: "check fields")
                expect("field comparison (one rank differs)", false, "mismatch not detected")
            } catch let error as JobError {
                expect("field comparison (one rank differs)",
                       error.message.contains("rank \(w - 1) has seed = 2 where rank 0 has seed = 1"), error.message)
            }
        }

        // Growth as a run does it: rank 0 grows a tiny model and sends it; every rank receives the
        // same grown config and tensors, and a copy that differs is named.
        let tiny = ModelConfig(layers: 1, width: 16, heads: 2, vocab: 32, context: 8, dropout: 0)
        let source = r == 0 ? try GPT(config: tiny, seed: 1).parameters : FloatBuffer(count: 0)
        let plan = GrowthPlan(layers: 2, width: 32, heads: 4)
        let grown = try GrowthBroadcast.grow(parameters: source, config: tiny, plan: plan, communicator: c, what: "in mpi-check")
        let shape = [grown.config.layers, grown.config.width, grown.config.heads, grown.parameters.count]
        expect("growth broadcast", shape == [2, 32, 4, grown.config.parameterCount] && grown.config.layerOrigins == [0, 0],
               "got \(grown.config)")
        if w > 1 {
            var received = try GrowthBroadcast.receive(parameters: source, config: tiny, plan: plan, communicator: c, what: "in mpi-check")
            if r == w - 1 { received.parameters[7] += 1 }
            do {
                try GrowthBroadcast.verify(&received, communicator: c, what: "in mpi-check")
                expect("growth checksum (one copy differs)", false, "difference not detected")
            } catch let error as JobError {
                expect("growth checksum (one copy differs)", error.message.contains("rank \(w - 1) has"), error.message)
            }
        }

        // How long a gradient-sized all-reduce takes (a rough health figure for the network).
        if timedElements > 0 && w > 1 {
            let gradient = FloatBuffer(count: timedElements)
            MPICommunicator.chunkElements = 1 << 30
            try c.allReduce(gradient, .sum, label: "timed all-reduce (warm-up)")
            var best = Double.infinity
            for _ in 0..<3 {
                try c.barrier(label: "timed all-reduce barrier")
                let start = DispatchTime.now().uptimeNanoseconds
                try c.allReduce(gradient, .sum, label: "timed all-reduce")
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            best = try c.allReduce(best, .max, label: "timed all-reduce result")
            if c.isRoot {
                // Bus bandwidth as NCCL's tests count it: 2 (W - 1) / W of the buffer crosses each link.
                let bus = Double(timedElements * 4) * 2 * Double(w - 1) / Double(w) / best / 1e9
                print(String(format: "all-reduce of %d float32 (%.1f MB): %.2f ms, bus bandwidth %.2f GB/s",
                             timedElements, Double(timedElements * 4) / 1e6, best * 1e3, bus))
            }
        }

        // Every rank's failures, reported by rank 0.
        let report = try c.gather(failures.joined(separator: "; "), label: "check results")
        let failed = try c.allReduce(Int64(failures.count), .sum, label: "check failure count")
        if c.isRoot {
            for (rank, text) in report.enumerated() where !text.isEmpty { print("rank \(rank) FAILED: \(text)") }
            print("mpi-check: \(failed == 0 ? "all checks passed" : "\(failed) check(s) failed") on \(w) rank(s) "
                  + "(all-reduce sum/max/min in float32, float64, int64, tree sum and reduce over float32 and bf16, of \(n) elements in chunks of \(chunkElements), "
                  + "non-blocking all-reduce, broadcast, gather, all-gather, barrier, MPI error reporting, replica hash and field comparison, "
                  + "growth broadcast and its checksum)")
        }
        if failed > 0 { throw JobError("mpi-check failed on \(w) rank(s)") }
    }
}
