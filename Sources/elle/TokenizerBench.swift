import ArgumentParser
import Corpus
import Dispatch
import Foundation
import Tensors

/// `elle bench tokenizer`: encode throughput (MB/s of UTF-8 input) per thread count and, for
/// train:SIZE, the time to learn the vocabulary. Numbers for docs/PERFORMANCE.md come from here
/// and scripts/bench_tokenizers.py (tiktoken and Hugging Face tokenizers on the same files).
struct TokenizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Time BPE or WordPiece encoding (MB/s) and BPE vocabulary training on real text.")

    @Option(help: "A .txt file or a folder of them (recursive), e.g. corpora/text or data/sample.")
    var text: String = "data/sample"
    @Option(help: "gpt2 (files in --gpt2-dir), a tokenizer.json (BPE or WordPiece) or BERT vocab.txt, or train:SIZE (train on --train-mb first).")
    var tokenizer: String = "gpt2"
    @Option(help: "Folder with GPT-2's vocab.json and merges.txt.") var gpt2Dir: String = "corpora/gpt2"
    @Option(help: "Megabytes of the text a train:SIZE vocabulary learns from.") var trainMb: Double = 20
    @Option(help: "Thread counts to time, comma-separated.") var threadCounts: String = "1,2"
    @Option(help: "Timed repeats per thread count (best is reported).") var repeats: Int = 3
    @Option(help: "Write the (trained) tokenizer.json here.") var save: String?
    @Option(help: "Write one line per file: path, token count, XXH64 of the ids as uint32 LE (for scripts/check_tiktoken_corpus.py).")
    var hashes: String?

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if counts.isEmpty || counts.contains(where: { $0 < 1 }) {
            throw ValidationError("--thread-counts must be positive integers, e.g. 1,2 (got \(threadCounts))")
        }
    }

    var counts: [Int] { threadCounts.split(separator: ",").compactMap { Int($0) } }

    func run() throws {
        let files = try TextCorpus.listFiles(text)
        var documents: [[UInt8]] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("\(file): cannot be read") }
            let bytes = [UInt8](data)
            try bytes.withUnsafeBufferPointer { try TextCheck.validate($0, path: file) }
            documents.append(bytes)
        }
        let totalBytes = documents.reduce(0) { $0 + $1.count }
        var training: (seconds: Double, bytes: Int)?

        let model: SubwordTokenizer
        if tokenizer == "gpt2" {
            model = try BPETokenizer.loadGPT2(vocab: gpt2Dir + "/vocab.json", merges: gpt2Dir + "/merges.txt")
        } else if tokenizer.hasPrefix("train:"), let size = Int(tokenizer.dropFirst(6)) {
            // The first train-mb of the text, in file order.
            var sample: [UnsafeBufferPointer<UInt8>] = []
            var left = Int(trainMb * 1e6)
            for doc in documents where left > 0 {
                let take = min(left, doc.count)
                doc.withUnsafeBufferPointer { sample.append(UnsafeBufferPointer(rebasing: $0[0..<take])) }
                left -= take
            }
            let start = DispatchTime.now().uptimeNanoseconds
            model = try withExtendedLifetime(documents) {
                try BPETrainer.train(documents: sample, vocabularySize: size, threads: counts.max()!)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            training = (seconds, sample.reduce(0) { $0 + $1.count })
        } else {
            model = try TokenizerFile.load(tokenizer)
        }
        if let save { try model.save(to: save) }

        var tokenCount = 0
        var rates: [String: Double] = [:]
        var encoded: [[Int32]] = []
        for t in counts {
            var best = Double.infinity
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                encoded = encodeAll(documents, model, threads: t)
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            rates["\(t)"] = Double(totalBytes) / best / 1e6
        }
        tokenCount = encoded.reduce(0) { $0 + $1.count }

        if let hashes {
            var lines = ""
            for (file, tokens) in zip(files, encoded) {
                var hasher = XXH64()
                tokens.map { UInt32(bitPattern: $0).littleEndian }.withUnsafeBytes { hasher.update($0) }
                lines += "\(file)\t\(tokens.count)\t\(String(hasher.finalize(), radix: 16))\n"
            }
            try lines.write(toFile: hashes, atomically: true, encoding: .utf8)
        }
        print(String(format: "%@: %d files, %.1f MB, %d tokens (%.2f bytes/token), vocabulary %d (%@)",
                     text, files.count, Double(totalBytes) / 1e6, tokenCount, Double(totalBytes) / Double(max(1, tokenCount)),
                     model.vocabularySize, tokenizer))
        if let training {
            print(String(format: "train: %.1f s for %.1f MB on %d thread(s)", training.seconds, Double(training.bytes) / 1e6, counts.max()!))
        }
        for t in counts { print(String(format: "encode: %.1f MB/s on %d thread(s)", rates["\(t)"]!, t)) }
    }

    /// Each document's tokens; documents cut into ~1 MB pieces (where pre-tokenization is
    /// unaffected) shared among `threads` workers, one encoder (and cache) each.
    func encodeAll(_ documents: [[UInt8]], _ model: SubwordTokenizer, threads: Int) -> [[Int32]] {
        var pieces: [(doc: Int, range: Range<Int>)] = []
        for (d, doc) in documents.enumerated() {
            let cuts = doc.withUnsafeBufferPointer { b -> [Int] in
                guard let base = b.baseAddress else { return [0, 0] }
                return [0] + PreTokenizer.safeCuts(base, b.count, parts: max(1, b.count >> 20)) + [b.count]
            }
            for k in 0..<(cuts.count - 1) { pieces.append((d, cuts[k]..<cuts[k + 1])) }
        }
        let results = UnsafeMutablePointer<[Int32]>.allocate(capacity: pieces.count)
        results.initialize(repeating: [], count: pieces.count)
        defer { results.deinitialize(count: pieces.count); results.deallocate() }
        let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { next.deallocate() }
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let encoder = model.makeEncoder()
            while true {
                lock.lock(); let k = next.pointee; next.pointee += 1; lock.unlock()
                if k >= pieces.count { break }
                var out: [Int32] = []
                documents[pieces[k].doc].withUnsafeBufferPointer { encoder.encode(UnsafeBufferPointer(rebasing: $0[pieces[k].range]), into: &out) }
                results[k] = out
            }
        }
        var byDocument = [[Int32]](repeating: [], count: documents.count)
        for k in 0..<pieces.count { byDocument[pieces[k].doc] += results[k] }
        return byDocument
    }
}
