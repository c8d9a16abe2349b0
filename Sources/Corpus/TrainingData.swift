import Foundation

/// The tokens a plain run trains on: raw text (byte tokenizer, validation tail) or a prepared
/// data folder (its tokenizer, the domain's memory-mapped train and valid shards).
public struct TrainingData {
    public let train: TokenStream
    public let valid: TokenStream
    public let tokenizer: Tokenizer
    /// "bytes", or the path of the prepared folder's tokenizer.json (saved in checkpoints).
    public let tokenizerName: String
    public let domain: String?
    /// One line for the log: where the tokens come from and how many.
    public let summary: String

    public init(path: String, domain: String?, validFraction: Double) throws {
        if PreparedData.isPrepared(path) {
            let prepared = try PreparedData(folder: path)
            let entry = try prepared.domain(domain)
            let bpe = try prepared.tokenizer()
            guard bpe.vocabularySize == prepared.manifest.tokenizer.vocabularySize else {
                throw DataError(path: prepared.tokenizerPath, "has \(bpe.vocabularySize) tokens but manifest.json says \(prepared.manifest.tokenizer.vocabularySize)")
            }
            train = try prepared.stream(entry.train)
            valid = try prepared.stream(entry.valid)
            tokenizer = bpe
            tokenizerName = prepared.tokenizerPath
            self.domain = entry.name
            summary = "domain \(entry.name), \(train.count) train / \(valid.count) valid tokens (BPE, vocabulary \(bpe.vocabularySize), memory-mapped shards)"
        } else {
            if let domain {
                throw DataError(path: path, "has no manifest.json, so it has no domains (--domain \(domain) needs a folder made by elle data prepare)")
            }
            let corpus = try TextCorpus(path: path, tokenizer: ByteTokenizer(), validFraction: validFraction)
            train = TokenStream(corpus.train)
            valid = TokenStream(corpus.valid)
            tokenizer = ByteTokenizer()
            tokenizerName = "bytes"
            self.domain = nil
            summary = "\(corpus.files.count) file(s), \(corpus.train.count) train / \(corpus.valid.count) valid tokens (bytes)"
        }
    }

    /// The tokenizer a checkpoint was trained with (its options.tokenizer: "bytes" or a path).
    public static func tokenizer(named name: String) throws -> Tokenizer {
        if name == "bytes" { return ByteTokenizer() }
        do { return try TokenizerFile.load(name) } catch let error as DataError {
            throw DataError(path: error.path, "(the checkpoint's tokenizer) \(error.message)")
        }
    }
}
