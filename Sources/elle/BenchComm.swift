import ArgumentParser
import Communication
import Foundation
import Model
import Tensors
import Training

/// `elle bench comm`: what data parallelism costs, under mpirun. All-reduce time and bandwidth by
/// message size, then full training steps of a model (random tokens) in four interleaved modes:
/// compute alone (each rank trains on its own, no collective), gradients all-reduced in buckets
/// overlapped with backward, one all-reduce after backward, and the same all-reduces alone.
struct BenchComm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comm",
        abstract: "Time all-reduces by size, and training steps with and without communication and overlap.",
        discussion: """
            Run under mpirun (e.g. mpirun -n 2 --bind-to none elle bench comm --threads 1). \
            Model and batch options are `elle bench`'s own (--layers, --width, --heads, --vocab, \
            --seq, --batch, --threads, --steps, --json); --batch is per rank. Each timed repeat runs \
            one step of every mode, in rotating order, so the machine's noise falls on all alike: \
            compute (a trainer on a single-process communicator: forward, backward, AdamW, all ranks \
            at once), overlapped (buckets of --bucket-mb all-reduced during backward), serial \
            (--bucket-mb 0: one all-reduce after backward), and alone (the collectives the \
            overlapped step started, replayed back to back with no computation). Every time is the \
            slowest rank's. exposed = overlapped - compute; hidden = 1 - exposed / alone. \
            With one process only the compute mode runs.
            """)

    /// Supplies the model shape, batch, --threads, --steps and --json.
    @ParentCommand var bench: Bench

    @Option(help: "All-reduce sizes in MiB, comma-separated (empty: skip).") var sizesMb: String = "0.004,0.0625,0.25,1,4,16,64"
    @Option(help: "Timed all-reduces per size.") var repeats: Int = 5
    @Option(help: "Gradient bucket size in MiB for the overlapped mode.") var bucketMb: Double = TrainingOptions.defaultBucketMB
    @Flag(help: "Skip the training steps (all-reduce sizes only).") var noModel = false
    @Option(help: "ZeRO stage of the overlapped and serial steps: 0, or 1 (gradient pieces reduced onto their owners, parameters all-gathered after the update).")
    var zero: Int = 0
    @Option(help: "What gradients cross the network as in the overlapped and serial steps: fp32 or bf16.")
    var allreduceDtype: Precision = .fp32

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if !(bucketMb > 0) { throw ValidationError("--bucket-mb must be positive (the serial mode is measured anyway)") }
        if zero != 0 && zero != 1 { throw ValidationError("--zero must be 0 or 1 (got \(zero))") }
        _ = try sizes()
    }

    func sizes() throws -> [Int] {
        try sizesMb.split(separator: ",").map { text in
            guard let mb = Double(text.trimmingCharacters(in: .whitespaces)), mb > 0 else {
                throw ValidationError("--sizes-mb: '\(text)' is not a positive number of MiB")
            }
            return max(1, Int(mb * 1_048_576 / 4))
        }
    }

    func run() throws {
        let communicator = try makeCommunicator()
        try Job.run(communicator) { try measure(communicator) }
    }

    func measure(_ c: Communicator) throws {
        let threads = Runtime.configureThreads(bench.compute.threads, ranksOnThisHost: c.localSize, quiet: !c.isRoot)
        var report: [String: Any] = ["ranks": c.size, "threads": threads, "blas_kernel": BLASInfo.coreName,
                                     "hosts": Set(try c.gather(c.hostName, label: "host names")).count]
        if c.size > 1 {
            report["allreduce"] = try allReduceSizes(c)
        }
        if !noModel {
            report.merge(try steps(c)) { a, _ in a }
        }
        guard c.isRoot else { return }
        if bench.json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            printText(report)
        }
    }

    // MARK: all-reduce by size

    func allReduceSizes(_ c: Communicator) throws -> [[String: Any]] {
        let counts = try sizes()
        let buffer = FloatBuffer(count: counts.max() ?? 1)
        var rows: [[String: Any]] = []
        for count in counts {
            var times: [Double] = []
            for k in 0..<(repeats + 1) {
                try c.barrier(label: "all-reduce benchmark barrier")
                let start = DispatchTime.now().uptimeNanoseconds
                let pending = try c.startAllReduce(buffer.pointer, count: count, .sum, label: "all-reduce benchmark (\(count) floats)")
                pending.progressInBackground()
                try pending.wait()
                let seconds = try slowest(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, c)
                if k > 0 { times.append(seconds) }  // the first one sets up connections
            }
            let bytes = Double(4 * count)
            let best = times.min()!, median = times.sorted()[times.count / 2]
            let bus = 2 * Double(c.size - 1) / Double(c.size)
            rows.append(["bytes": 4 * count, "best_ms": best * 1000, "median_ms": median * 1000,
                         "algbw_gbps": bytes / median / 1e9, "busbw_gbps": bus * bytes / median / 1e9])
        }
        return rows
    }

    // MARK: training steps

    func steps(_ c: Communicator) throws -> [String: Any] {
        let config = ModelConfig(layers: bench.layers, width: bench.width, heads: bench.heads, vocab: bench.vocab,
                                 context: bench.seq, dropout: 0)
        var rng = Xoshiro256(seed: 11)
        let windows = bench.batch * c.size * 8
        let train = Buffer<Int32>((0..<(windows * bench.seq + 1)).map { _ in Int32(rng.nextInt(below: bench.vocab)) })
        let valid = Buffer<Int32>((0..<(bench.seq + 1)).map { _ in Int32(rng.nextInt(below: bench.vocab)) })
        func options(bucketMB: Double) -> TrainingOptions {
            var o = TrainingOptions(batch: bench.batch, seq: bench.seq, steps: 1_000_000,
                                    schedule: LearningRateSchedule(kind: .constant, peak: 1e-5), dataPath: "random tokens")
            o.bucketMB = bucketMB
            o.precision = bench.compute.precision ?? .fp32
            o.zero = zero
            o.allreduceDType = allreduceDtype
            return o
        }
        func trainer(_ communicator: Communicator, bucketMB: Double) throws -> Trainer {
            let t = try Trainer(model: try GPT(config: config, seed: 1), options: options(bucketMB: bucketMB),
                                train: train, valid: valid, communicator: communicator)
            t.replicaCheckEvery = 0
            return t
        }
        // Modes: 0 compute alone, 1 overlapped, 2 serial, 3 the overlapped step's collectives alone.
        var trainers = [try trainer(SingleProcess(), bucketMB: bucketMb)]
        if c.size > 1 {
            trainers.append(try trainer(c, bucketMB: bucketMb))
            trainers.append(try trainer(c, bucketMB: 0))
        }
        let modes = c.size > 1 ? 4 : 1
        // The bf16 exchange's error: the first update's summed gradient (after clipping) against a
        // float32 exchange of the same gradients (same parameters, same batch).
        var gradientError: [String: Double]?
        if c.size > 1 && allreduceDtype == .bf16 && zero == 0 {
            var exact = options(bucketMB: bucketMb)
            exact.allreduceDType = nil
            let reference = try Trainer(model: try GPT(config: config, seed: 1), options: exact, train: train, valid: valid, communicator: c)
            reference.replicaCheckEvery = 0
            _ = try reference.trainStep()
            _ = try trainers[1].trainStep()
            let a = reference.model.gradients, b = trainers[1].model.gradients
            var difference = 0.0, norm = 0.0, largest = 0.0, scale = 0.0
            for i in 0..<a.count {
                let d = Double(b[i]) - Double(a[i])
                difference += d * d
                norm += Double(a[i]) * Double(a[i])
                largest = max(largest, abs(d))
                scale = max(scale, abs(Double(a[i])))
            }
            gradientError = ["relative_l2": (difference / norm).squareRoot(), "max_abs_over_max": largest / scale]
        }
        for t in trainers { for _ in 0..<2 { _ = try t.trainStep() } }  // warm-up
        let collectives = c.size > 1 ? trainers[1].lastGradientCollectives : []
        let replay = FloatBuffer(count: max(1, collectives.map(\.count).reduce(0, +)))

        var seconds = [[Double]](repeating: [], count: modes)
        var waits = [[Double]](repeating: [], count: 3)
        for repeat_ in 0..<bench.steps {
            for k in 0..<modes {
                let mode = (k + repeat_) % modes
                try c.barrier(label: "step benchmark barrier")
                let start = DispatchTime.now().uptimeNanoseconds
                if mode < 3 {
                    let result = try trainers[mode].trainStep()
                    waits[mode].append(try slowest(result.communicationWaitSeconds, c))
                } else {
                    try CollectiveRecord.replay(collectives, on: c, buffer: replay.pointer)
                }
                seconds[mode].append(try slowest(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, c))
            }
        }
        let names = ["compute", "overlapped", "serial", "alone"]
        var result: [String: Any] = [
            "layers": bench.layers, "width": bench.width, "heads": bench.heads, "vocab": bench.vocab, "seq": bench.seq,
            "batch": bench.batch, "steps": bench.steps, "parameters": config.parameterCount, "bucket_mb": bucketMb,
            "zero": zero, "allreduce_dtype": allreduceDtype.rawValue, "precision": (bench.compute.precision ?? .fp32).rawValue,
            "collectives": collectives.count, "bytes_per_step": collectives.map(\.bytes).reduce(0, +),
        ]
        if let gradientError { result["bf16_exchange_gradient_error"] = gradientError }
        for mode in 0..<modes {
            let sorted = seconds[mode].sorted()
            result["\(names[mode])_ms"] = seconds[mode].map { $0 * 1000 }
            result["\(names[mode])_ms_median"] = sorted[sorted.count / 2] * 1000
            if mode < 3 { result["\(names[mode])_wait_ms_median"] = waits[mode].sorted()[waits[mode].count / 2] * 1000 }
        }
        if modes == 4 {
            // Per repeat (the modes of one repeat ran back to back), then the median of those.
            let hidden = (0..<bench.steps).map { 1 - (seconds[1][$0] - seconds[0][$0]) / seconds[3][$0] }
            result["hidden_fraction"] = hidden
            result["hidden_fraction_median"] = hidden.sorted()[hidden.count / 2]
            result["exposed_ms_median"] = (0..<bench.steps).map { (seconds[1][$0] - seconds[0][$0]) * 1000 }.sorted()[bench.steps / 2]
        }
        return result
    }

    /// The largest of every rank's `value` (what a synchronized job waits for).
    func slowest(_ value: Double, _ c: Communicator) throws -> Double {
        c.size > 1 ? try c.allReduce(value, .max, label: "benchmark time") : value
    }

    func printText(_ r: [String: Any]) {
        print("elle bench comm: \(r["ranks"]!) rank(s) on \(r["hosts"]!) host(s), \(r["threads"]!) thread(s) each, OpenBLAS \(r["blas_kernel"]!)")
        if let rows = r["allreduce"] as? [[String: Any]] {
            print("all-reduce (sum, float32, ring; slowest rank; median of \(repeats)):")
            print("      bytes     best ms   median ms   algbw GB/s   busbw GB/s")
            for row in rows {
                print(String(format: "%11d  %10.3f  %10.3f  %11.3f  %11.3f", row["bytes"] as! Int, row["best_ms"] as! Double,
                             row["median_ms"] as! Double, row["algbw_gbps"] as! Double, row["busbw_gbps"] as! Double))
            }
        }
        guard r["compute_ms_median"] != nil else { return }
        print(String(format: "model L%d D%d H%d V%d T%d, batch %d per rank, %.2fM parameters, %@ step; %d collectives, %.1f MB per step (bucket %.1f MiB, %@ exchange, ZeRO %d)",
                     r["layers"] as! Int, r["width"] as! Int, r["heads"] as! Int, r["vocab"] as! Int, r["seq"] as! Int,
                     r["batch"] as! Int, Double(r["parameters"] as! Int) / 1e6, r["precision"] as! String, r["collectives"] as! Int,
                     Double(r["bytes_per_step"] as! Int) / 1e6, r["bucket_mb"] as! Double, r["allreduce_dtype"] as! String, r["zero"] as! Int))
        for name in ["compute", "overlapped", "serial", "alone"] {
            guard let all = r["\(name)_ms"] as? [Double] else { continue }
            let wait = (r["\(name)_wait_ms_median"] as? Double).map { String(format: ", waited after backward %.1f ms", $0) } ?? ""
            print(String(format: "  %-10@ median %8.1f ms (range %.1f-%.1f)", name, r["\(name)_ms_median"] as! Double,
                         all.min()!, all.max()!) + wait)
        }
        if let error = r["bf16_exchange_gradient_error"] as? [String: Double] {
            print(String(format: "  bf16 exchange against float32, first update's gradient: relative L2 error %.2e, largest error / largest value %.2e",
                         error["relative_l2"]!, error["max_abs_over_max"]!))
        }
        if let hidden = r["hidden_fraction"] as? [Double] {
            print(String(format: "  exposed communication %.1f ms; hidden fraction %.0f%% (range %.0f-%.0f%%)",
                         r["exposed_ms_median"] as! Double, 100 * (r["hidden_fraction_median"] as! Double),
                         100 * hidden.min()!, 100 * hidden.max()!))
        }
    }
}
