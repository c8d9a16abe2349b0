import Corpus
import Foundation
import Model
import Tensors
import Training

/// A Hugging Face model folder (`save_pretrained` layout): `config.json`, `model.safetensors`
/// (or shards named by `model.safetensors.index.json`) and the tokenizer files. `write` exports
/// an elle model into one; `read` imports one. Tensor names and layouts come from the model's
/// layout (`ModelLayout.huggingFaceNames`), `config.json` and skipped entries from the
/// architecture's `HFArchitecture`.
public enum HFModelFolder {
    public static let weightsFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    // MARK: export

    public struct ExportSummary {
        public var modelClass: String
        public var tensors: Int
        public var bytes: Int
        public var files: [String]
    }

    /// Writes `parameters` of a model of `config` with its tokenizer into `folder` (created if
    /// needed): model.safetensors (Float32), config.json, tokenizer.json, tokenizer_config.json.
    /// `provenance` lands in config.json's `elle` entry and the safetensors metadata.
    @discardableResult
    public static func write(config: ModelConfig, parameters: FloatBuffer, tokenizer: ModelTokenizer,
                             to folder: String, provenance: [String: String] = [:]) throws -> ExportSummary {
        guard config.normalization == .layerNorm else {
            throw InteropError(path: folder, "cannot export a model whose norms are \(config.normalization.rawValue) (a diagnostic); Hugging Face models use LayerNorm")
        }
        if let ramp = config.ramp {
            throw InteropError(path: folder, "cannot export a model in the middle of a masked ramp (\(ramp.done) of \(ramp.length) updates): its masked norms have no Hugging Face equivalent; export a checkpoint from after the ramp")
        }
        guard tokenizer.vocabularySize <= config.vocab else {
            throw InteropError(path: folder, "cannot export: the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(config.vocab) rows")
        }
        let architecture = HFArchitectures.forElle(config.architecture)
        if architecture.maskedLM, case .bytes = tokenizer {
            throw InteropError(path: folder, "cannot export a BERT model with the byte tokenizer: \(architecture.modelClass) needs a BPE tokenizer with <|mask|> and <|pad|>")
        }
        let layout = TensorTable(config)
        guard parameters.count == config.parameterCount else {
            throw InteropError(path: folder, "cannot export: \(parameters.count) parameters, but \(config) has \(config.parameterCount)")
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)

        var entries: [SafeTensorsEntry] = []
        var copies: [FloatBuffer] = []  // transposed tensors and zeros, alive until the file is written
        for name in architecture.tensorNames(for: config) {
            let (source, count) = layout.part(name, of: parameters.pointer)
            if name.transposed {
                let copy = FloatBuffer(count: count, zeroed: false)
                transpose(source, rows: name.shape[0], columns: name.shape[1], into: copy.pointer)
                copies.append(copy)
                entries.append(SafeTensorsEntry(name: name.hf, shape: name.hfShape, floats: UnsafeBufferPointer(copy.buffer)))
            } else {
                entries.append(SafeTensorsEntry(name: name.hf, shape: name.hfShape, floats: UnsafeBufferPointer(start: source, count: count)))
            }
        }
        for (name, shape) in architecture.zeroTensors(for: config) {
            let zeros = FloatBuffer(count: shape.reduce(1, *))
            copies.append(zeros)
            entries.append(SafeTensorsEntry(name: name, shape: shape, floats: UnsafeBufferPointer(zeros.buffer)))
        }
        var metadata = ["format": "pt"]
        for (key, value) in provenance { metadata["elle." + key] = value }
        let weights = (folder as NSString).appendingPathComponent(weightsFile)
        try withExtendedLifetime(copies) {
            try SafeTensorsWriter.write(entries, metadata: metadata, to: weights)
        }

        var ids = HFSpecialIds(endOfText: tokenizer.endOfText, pad: tokenizer.pad)
        if let t = tokenizer.subword { (ids.begin, ids.mask) = (Int(t.beginOfSequence), Int(t.mask)) }
        var json = architecture.configJSON(for: config, ids: ids)
        var elle: [String: Any] = provenance
        if case .bytes = tokenizer { elle["tokenizer"] = "bytes" }
        if let origins = config.layerOrigins { elle["layer_origins"] = origins }
        json["elle"] = elle
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try writeAtomically(data, to: (folder as NSString).appendingPathComponent("config.json"))
        try tokenizer.writeHF(folder: folder, context: config.context, maskedLM: architecture.maskedLM)
        return ExportSummary(modelClass: architecture.modelClass, tensors: entries.count,
                             bytes: entries.reduce(0) { $0 + $1.bytes.count },
                             files: [weightsFile, "config.json", "tokenizer.json", "tokenizer_config.json"])
    }

    // MARK: import

    /// A model read from a Hugging Face folder, in elle's layout.
    public struct Imported {
        public var config: ModelConfig
        public var parameters: FloatBuffer
        public var tokenizer: ModelTokenizer
        public var modelClass: String
        /// Token ids whose rows the folder did not have (specials elle adds, or the ones of a
        /// `--tokenizer` given on import): set to the mean of the folder's rows.
        public var addedTokenRows: [Int]
        /// Rows of the token embedding in the folder.
        public var sourceVocab: Int
        /// What the import changed or left out, for the user (e.g. BERT's token types).
        public var notes: [String] = []
    }

    /// Reads the model in `folder`. The tokenizer is the folder's, or `tokenizer` (an elle
    /// tokenizer.json, e.g. a prepared data folder's, whose ordinary tokens must be the folder's;
    /// its specials are matched to the folder's by name).
    public static func read(folder: String, tokenizer override: String? = nil) throws -> Imported {
        let configPath = (folder as NSString).appendingPathComponent("config.json")
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw InteropError(path: configPath, "cannot be read (a Hugging Face model folder holds config.json)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: configData) as? [String: Any] else {
            throw InteropError(path: configPath, "is not a JSON object")
        }
        let modelType = json["model_type"] as? String ?? "(none)"
        guard let architecture = HFArchitectures.forModelType(modelType) else {
            throw InteropError(path: configPath, "has model_type \(modelType); elle imports \(HFArchitectures.all.map(\.modelType).joined(separator: ", "))")
        }
        let source = try architecture.modelConfig(fromConfigJSON: json, path: configPath)

        // Tokenizer, and where each of its ids' rows comes from in the folder's model.
        let found = try ModelTokenizer.readHF(folder: folder)
        var tokenizer = found.tokenizer
        if let override {
            let chosen = ModelTokenizer(try TokenizerFile.load(override))
            try requireSameOrdinaryTokens(chosen, as: found.tokenizer, folderFile: found.file, path: override)
            tokenizer = chosen
        }
        var rowSource = [Int?](repeating: nil, count: max(tokenizer.vocabularySize, source.vocab))
        let ordinary = tokenizer.vocabularySize - tokenizer.specials.count
        for id in 0..<ordinary { rowSource[id] = id }
        for (id, name) in tokenizer.specials { rowSource[id] = found.sourceIds[name] }
        // Rows past the tokenizer's ids (a model wider than its tokenizer) stay where they are.
        for id in tokenizer.vocabularySize..<rowSource.count { rowSource[id] = id }
        for (id, from) in rowSource.enumerated() {
            if let from, from >= source.vocab {
                throw InteropError(path: found.file, "token \(id) is id \(from) of the folder's tokenizer, past the model's \(source.vocab) rows (vocab_size)")
            }
        }
        var config = source
        config.vocab = rowSource.count
        // A masked LM's attention ignores padding keys: elle marks them by the pad token's id.
        if architecture.maskedLM, let t = tokenizer.subword { config.padToken = t.pad }

        let weights = try WeightFiles(folder: folder)
        let layout = TensorTable(config)
        let parameters = FloatBuffer(count: config.parameterCount, zeroed: false)
        let sourceNames = architecture.tensorNames(for: source)
        var used = Set<String>()
        var addedTokenRows: [Int] = []
        for (name, sourceName) in zip(architecture.tensorNames(for: config), sourceNames) {
            guard let (file, tensor) = weights.find(name.hf, prefix: architecture.basePrefix) else {
                throw InteropError(path: weights.description, "has no tensor \(name.hf) (nor \(name.hf.dropPrefix(architecture.basePrefix))), needed for elle's \(name.elle) of a \(source)")
            }
            used.insert(tensor.name)
            guard tensor.shape == sourceName.hfShape else {
                throw InteropError(path: file.path, "tensor \(tensor.name) has shape \(tensor.shape); config.json's model needs \(sourceName.hfShape)")
            }
            let destination = layout.part(name, of: parameters.pointer).pointer
            let values = FloatBuffer(count: tensor.count, zeroed: false)
            try file.readFloats(tensor, into: values.pointer)
            if name.transposed {
                transpose(values.pointer, rows: sourceName.hfShape[0], columns: sourceName.hfShape[1], into: destination)
            } else if name.tokenRows {
                addedTokenRows = copyRows(values.pointer, rows: source.vocab, width: tensor.count / max(source.vocab, 1),
                                          sources: rowSource, into: destination)
            } else {
                destination.update(from: values.pointer, count: tensor.count)
            }
        }
        // Every other entry must be a buffer or a tied copy; anything else is a model elle would
        // import wrongly.
        let byHF = Dictionary(uniqueKeysWithValues: zip(sourceNames.map(\.hf), sourceNames))
        for (file, tensor) in weights.all where !used.contains(tensor.name) {
            switch architecture.skipped(tensor.name.dropPrefix(architecture.basePrefix)) {
            case .buffer?, .folded?, .otherHead?:
                continue
            case .tied(let target)?:
                let (targetFile, targetTensor) = weights.find(target, prefix: architecture.basePrefix)!
                let a = try file.floats(tensor.name), b = try targetFile.floats(targetTensor.name)
                guard a.count == b.count, zip(a, b).allSatisfy({ $0.bitPattern == $1.bitPattern }) else {
                    throw InteropError(path: file.path, "tensor \(tensor.name) differs from \(target) (\(byHF[target]!.elle) in elle); elle's \(architecture.modelClass) ties them, so this model cannot be imported exactly")
                }
            case nil:
                throw InteropError(path: file.path, "has tensor \(tensor.name), which \(architecture.modelClass) as elle maps it does not use")
            }
        }
        let notes = try architecture.foldUnmapped(into: parameters.pointer, config: config) { name in
            guard let (file, tensor) = weights.find(name, prefix: architecture.basePrefix) else { return nil }
            return (tensor.shape, try file.floats(tensor.name), file.path)
        }
        return Imported(config: config, parameters: parameters, tokenizer: tokenizer, modelClass: architecture.modelClass,
                        addedTokenRows: addedTokenRows, sourceVocab: source.vocab, notes: notes)
    }

    /// The checkpoint of an imported model: step 0, no optimizer state, and options that name its
    /// tokenizer ("bytes" or a tokenizer.json path) so `elle sample` and `elle train` find it. It
    /// has no data to resume; its data path says so, which is what `elle train --resume` reports.
    public static func checkpoint(of model: Imported, tokenizerName: String, source folder: String) -> Checkpoint {
        let dataPath = "(none: imported from \(folder); start a run from it with elle train --init-from)"
        var options = TrainingOptions(batch: 1, seq: model.config.context, steps: 0,
                                      schedule: LearningRateSchedule(kind: .constant, peak: 1e-4), dataPath: dataPath)
        options.tokenizer = tokenizerName
        let state = TrainingState(step: 0, options: options, loaders: [], optimizerStep: 0, tokensSeen: 0, worldSize: 1)
        return Checkpoint(config: model.config, state: state, tensors: [("parameters", model.parameters)])
    }

    static func requireSameOrdinaryTokens(_ chosenTokenizer: ModelTokenizer, as folder: ModelTokenizer, folderFile: String, path: String) throws {
        if case .wordPiece(let chosen) = chosenTokenizer {
            guard case .wordPiece(let reference) = folder else {
                throw InteropError(path: path, "is a WordPiece tokenizer but the model's tokenizer \(folderFile) is not")
            }
            guard chosen.tokens == reference.tokens else {
                let id = chosen.tokens.indices.first { $0 < reference.tokens.count && chosen.tokens[$0] != reference.tokens[$0] } ?? min(chosen.tokens.count, reference.tokens.count)
                throw InteropError(path: path, "has \(chosen.tokens.count) vocabulary tokens, the model's tokenizer \(folderFile) \(reference.tokens.count); they differ from id \(id)")
            }
            guard chosen.normalization == reference.normalization else {
                throw InteropError(path: path, "normalizes text otherwise (lowercasing, accents, CJK) than the model's tokenizer \(folderFile)")
            }
            return
        }
        guard case .bpe(let chosen) = chosenTokenizer else { throw InteropError(path: path, "is not a tokenizer.json") }
        let reference: BPETokenizer
        switch folder {
        case .bpe(let t): reference = t
        case .bytes:
            reference = try BPETokenizer(tokenBytes: (0..<256).map { [UInt8($0)] }, merges: [])
        case .wordPiece:
            throw InteropError(path: path, "is a byte-level BPE but the model's tokenizer \(folderFile) is WordPiece")
        }
        guard chosen.ordinaryCount == reference.ordinaryCount else {
            throw InteropError(path: path, "has \(chosen.ordinaryCount) ordinary tokens but the model's tokenizer \(folderFile) has \(reference.ordinaryCount)")
        }
        if let id = (0..<chosen.ordinaryCount).first(where: { chosen.tokenBytes[$0] != reference.tokenBytes[$0] }) {
            throw InteropError(path: path, "token \(id) is \(chosen.tokenText(Int32(id)).debugDescription) but \(reference.tokenText(Int32(id)).debugDescription) in the model's tokenizer \(folderFile)")
        }
        guard chosen.merges.count == reference.merges.count,
              zip(chosen.merges, reference.merges).allSatisfy({ $0 == $1 }) else {
            throw InteropError(path: path, "has other merges than the model's tokenizer \(folderFile)")
        }
    }
}

/// Where each parameter tensor of a config lives in its flat buffer, by name.
struct TensorTable {
    let specs: [String: TensorSpec]
    init(_ config: ModelConfig) {
        specs = Dictionary(uniqueKeysWithValues: config.parameterTensors.map { ($0.name, $0) })
    }

    /// The values an entry of an architecture's table holds: the tensor, or its `rows`.
    func part(_ name: HFTensorName, of parameters: UnsafeMutablePointer<Float>) -> (pointer: UnsafeMutablePointer<Float>, count: Int) {
        let spec = specs[name.elle]!
        guard let rows = name.rows else { return (parameters + spec.offset, spec.count) }
        let width = spec.count / spec.shape[0]
        return (parameters + spec.offset + rows.lowerBound * width, rows.count * width)
    }
}

/// The safetensors file(s) of a folder: `model.safetensors`, or the shards an index names.
final class WeightFiles: CustomStringConvertible {
    let files: [SafeTensorsFile]
    private let location: [String: (file: Int, tensor: SafeTensorsFile.Tensor)]
    let description: String

    init(folder: String) throws {
        let single = (folder as NSString).appendingPathComponent(HFModelFolder.weightsFile)
        let index = (folder as NSString).appendingPathComponent(HFModelFolder.indexFile)
        var paths: [String]
        if FileManager.default.fileExists(atPath: single) {
            paths = [single]
            description = single
        } else if let data = FileManager.default.contents(atPath: index) {
            guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = root["weight_map"] as? [String: String] else {
                throw InteropError(path: index, "has no weight_map object of tensor -> file")
            }
            paths = Set(map.values).sorted().map { (folder as NSString).appendingPathComponent($0) }
            description = index
        } else {
            let hasBin = FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent("pytorch_model.bin"))
            throw InteropError(path: folder, "has no \(HFModelFolder.weightsFile)" + (hasBin ? " (only pytorch_model.bin, which elle does not read: save with safe_serialization=True)" : ""))
        }
        files = try paths.map { try SafeTensorsFile(path: $0) }
        var location: [String: (Int, SafeTensorsFile.Tensor)] = [:]
        for (k, file) in files.enumerated() {
            for tensor in file.tensors {
                if location[tensor.name] != nil { throw InteropError(path: file.path, "repeats tensor \(tensor.name) of another shard") }
                location[tensor.name] = (k, tensor)
            }
        }
        // Early BERT files name LayerNorm parameters gamma and beta; transformers renames them on load.
        for (name, entry) in location {
            for (old, new) in [(".gamma", ".weight"), (".beta", ".bias")] where name.contains("LayerNorm") && name.hasSuffix(old) {
                let renamed = String(name.dropLast(old.count)) + new
                if location[renamed] == nil { location[renamed] = entry }
            }
        }
        self.location = location
    }

    /// The entry `name`, or the same without the base model's prefix.
    func find(_ name: String, prefix: String) -> (SafeTensorsFile, SafeTensorsFile.Tensor)? {
        for candidate in [name, name.dropPrefix(prefix)] {
            if let (k, tensor) = location[candidate] { return (files[k], tensor) }
        }
        return nil
    }

    var all: [(SafeTensorsFile, SafeTensorsFile.Tensor)] {
        files.flatMap { file in file.tensors.map { (file, $0) } }
    }
}

/// Copies a token-indexed matrix, row r of the result from row `sources[r]` of `values`; rows
/// without a source get the mean of all source rows. Returns those rows' ids.
func copyRows(_ values: UnsafePointer<Float>, rows: Int, width: Int, sources: [Int?],
              into out: UnsafeMutablePointer<Float>) -> [Int] {
    var mean = [Double](repeating: 0, count: width)
    var missing: [Int] = []
    for (r, source) in sources.enumerated() {
        if let source {
            (out + r * width).update(from: values + source * width, count: width)
        } else {
            missing.append(r)
        }
    }
    if !missing.isEmpty {
        for r in 0..<rows {
            for j in 0..<width { mean[j] += Double(values[r * width + j]) }
        }
        for r in missing {
            for j in 0..<width { out[r * width + j] = Float(mean[j] / Double(rows)) }
        }
    }
    return missing
}

/// out[c, r] = x[r, c] for a rows x columns matrix, in 32 x 32 tiles.
func transpose(_ x: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    let tile = 32
    for r0 in stride(from: 0, to: rows, by: tile) {
        for c0 in stride(from: 0, to: columns, by: tile) {
            for r in r0..<min(r0 + tile, rows) {
                for c in c0..<min(c0 + tile, columns) { out[c * rows + r] = x[r * columns + c] }
            }
        }
    }
}

extension String {
    func dropPrefix(_ prefix: String) -> String { hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self }
}
