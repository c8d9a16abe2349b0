import Corpus
import Foundation
import Interop
import Model
import Tensors
import TestSupport
import XCTest

/// Export to and import from Hugging Face model folders.
final class HFInteropTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("hf-interop") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    /// A BPE with two domain prompts (one assigned from a spare), learned on the sample.
    func sampleTokenizer(vocabularySize: Int = 400) throws -> BPETokenizer {
        let text = Array(FileManager.default.contents(atPath: try TextCorpus.listFiles(sampleDataPath())[0])!)
        let t = try text.withUnsafeBufferPointer {
            try BPETrainer.train(documents: [$0], vocabularySize: vocabularySize, domains: ["literature", "legal"])
        }
        try t.assignPrompt(domain: "biomedical")
        return t
    }

    /// Sizes that are not multiples of the SIMD width, a grown-model lineage and non-default numerics.
    func oddConfig(vocab: Int) -> ModelConfig {
        var c = ModelConfig(layers: 3, width: 24, heads: 3, vocab: vocab, context: 13, ffn: 40, dropout: 0.05, layerNormEpsilon: 1e-6)
        c.layerOrigins = [0, 0, 1]
        return c
    }

    func randomModel(_ config: ModelConfig) throws -> FloatBuffer {
        let gpt = try GPT(config: config, seed: 9)
        fillUniform(gpt.parameters.pointer, gpt.parameterCount, scale: 0.5, seed: 10)
        return gpt.parameters
    }

    /// Export then import: the same tensors bit for bit, the same config and the same tokenizer;
    /// the file holds GPT2LMHeadModel's names in Conv1D layout and no lm_head.
    func testExportThenImportIsExactWithBPE() throws {
        let tokenizer = try sampleTokenizer()
        let config = oddConfig(vocab: tokenizer.vocabularySize + 5)  // a model wider than its tokenizer
        let parameters = try randomModel(config)
        try HFModelFolder.write(config: config, parameters: parameters, tokenizer: .bpe(tokenizer), to: folder,
                                provenance: ["checkpoint": "test"])
        let imported = try HFModelFolder.read(folder: folder)
        XCTAssertEqual(imported.config, config)
        XCTAssertEqual(imported.modelClass, "GPT2LMHeadModel")
        XCTAssertEqual(imported.addedTokenRows, [])
        XCTAssertTrue(bitIdentical(imported.parameters.pointer, parameters.pointer, parameters.count), "parameters differ")
        guard case .bpe(let back) = imported.tokenizer else { return XCTFail("expected a BPE tokenizer") }
        XCTAssertEqual(back.tokenBytes, tokenizer.tokenBytes)
        XCTAssertTrue(back.merges.elementsEqual(tokenizer.merges, by: ==))
        XCTAssertEqual(back.specials, tokenizer.specials)
        XCTAssertEqual(back.promptId(domain: "biomedical"), tokenizer.promptId(domain: "biomedical"))

        // Names, Conv1D layout, no stored lm_head.
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        XCTAssertEqual(file.metadata["format"], "pt")
        XCTAssertEqual(file.tensors.count, 2 + 12 * 3 + 2)
        XCTAssertNil(file.tensor("lm_head.weight"))
        XCTAssertEqual(file.tensor("transformer.wte.weight")?.shape, [config.vocab, 24])
        XCTAssertEqual(file.tensor("transformer.wpe.weight")?.shape, [13, 24])
        XCTAssertEqual(file.tensor("transformer.h.2.mlp.c_fc.weight")?.shape, [24, 40])
        XCTAssertEqual(file.tensor("transformer.h.2.mlp.c_proj.weight")?.shape, [40, 24])
        XCTAssertEqual(file.tensor("transformer.ln_f.bias")?.shape, [24])
        let cAttn = try file.floats("transformer.h.1.attn.c_attn.weight")  // [in 24, out 72]
        let qkv = GPTLayout(config: config).blocks[1].qkvWeight           // [out 72, in 24]
        for (o, i) in [(0, 0), (5, 17), (71, 23), (40, 3)] {
            XCTAssertEqual(cAttn[i * 72 + o].bitPattern, parameters[qkv + o * 24 + i].bitPattern)
        }

        // config.json as transformers reads it.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as! [String: Any]
        XCTAssertEqual(json["architectures"] as? [String], ["GPT2LMHeadModel"])
        XCTAssertEqual(json["model_type"] as? String, "gpt2")
        XCTAssertEqual(json["n_layer"] as? Int, 3)
        XCTAssertEqual(json["n_embd"] as? Int, 24)
        XCTAssertEqual(json["n_head"] as? Int, 3)
        XCTAssertEqual(json["n_inner"] as? Int, 40)
        XCTAssertEqual(json["n_positions"] as? Int, 13)
        XCTAssertEqual(json["vocab_size"] as? Int, config.vocab)
        XCTAssertEqual(json["activation_function"] as? String, "gelu_new")
        XCTAssertEqual(json["resid_pdrop"] as? Double, 0.05)
        XCTAssertEqual(json["layer_norm_epsilon"] as? Double, 1e-6)
        XCTAssertEqual(json["tie_word_embeddings"] as? Bool, true)
        XCTAssertEqual(json["eos_token_id"] as? Int, Int(tokenizer.endOfText))
        // Every special, domain prompts included, is an added token of tokenizer.json.
        let tokenizerJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer.json"))) as! [String: Any]
        let added = (tokenizerJSON["added_tokens"] as! [[String: Any]]).map { $0["content"] as! String }
        XCTAssertEqual(added, tokenizer.specials)
        XCTAssertTrue(added.contains("<|domain:legal|>") && added.contains("<|domain:biomedical|>"))
    }

    /// A byte-level checkpoint exports with a byte tokenizer.json and comes back as `.bytes`.
    func testExportThenImportIsExactWithBytes() throws {
        let config = oddConfig(vocab: 257)
        let parameters = try randomModel(config)
        try HFModelFolder.write(config: config, parameters: parameters, tokenizer: .bytes, to: folder)
        let imported = try HFModelFolder.read(folder: folder)
        XCTAssertEqual(imported.config, config)
        XCTAssertTrue(bitIdentical(imported.parameters.pointer, parameters.pointer, parameters.count))
        guard case .bytes = imported.tokenizer else { return XCTFail("expected the byte tokenizer, got \(imported.tokenizer)") }
        // The exported tokenizer.json, read as a BPE, encodes text to its bytes.
        let asBPE = try BPETokenizer.load(folder + "/tokenizer.json")
        let text = "Ünïcode, tabs\tand  spaces <|endoftext|>"
        XCTAssertEqual(asBPE.encode(text), ByteTokenizer().encode(text))
        XCTAssertEqual(asBPE.endOfText, 256)
    }

    func testExportRefusesATokenizerLargerThanTheModel() throws {
        let tokenizer = try sampleTokenizer()
        let config = oddConfig(vocab: tokenizer.vocabularySize - 1)
        XCTAssertThrowsError(try HFModelFolder.write(config: config, parameters: try randomModel(config), tokenizer: .bpe(tokenizer), to: folder)) {
            XCTAssertTrue("\($0)".contains("the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(config.vocab) rows"), "\($0)")
        }
    }

    // MARK: a model saved by transformers

    var tinyFolder: String { fixtureURL("hf-gpt2-tiny").path }

    /// The reference tokens and logits transformers computed (scripts/make_interop_fixture.py).
    func reference() throws -> (text: String, ids: [Int32], tokens: [Int32], logits: [Float], vocab: Int) {
        let file = try SafeTensorsFile(path: fixtureURL("hf-gpt2-tiny-reference.safetensors").path)
        func int64s(_ name: String) -> [Int32] { Array(file.bytes(of: file.tensor(name)!).bindMemory(to: Int64.self)).map { Int32($0) } }
        let ids = int64s("ids"), tokens = int64s("tokens")
        let logits = try file.floats("logits")
        let text = try String(contentsOf: fixtureURL("hf-gpt2-tiny-reference.txt"), encoding: .utf8)
        return (text, ids, tokens, logits, file.tensor("logits")!.shape[2])
    }

    /// Logits of `parameters` on `tokens`, one row of `config.vocab` per position.
    func logits(_ config: ModelConfig, _ parameters: FloatBuffer, _ tokens: [Int32]) throws -> [Float] {
        let model = try GPT(config: config, parameters: parameters)
        tokens.withUnsafeBufferPointer { _ = model.forward(tokens: $0.baseAddress!, targets: nil, batch: 1, seq: tokens.count) }
        return Array(UnsafeBufferPointer(start: model.logits, count: tokens.count * config.vocab))
    }

    /// A GPT2LMHeadModel saved by transformers' save_pretrained imports; elle's tokenizer encodes
    /// the text to the same ids as transformers' and its logits match to 1e-4 relative. The
    /// specials elle adds (pad, mask, bos, 16 spare prompts) get new rows: the mean row.
    func testImportOfTransformersModelMatchesItsLogits() throws {
        let ref = try reference()
        let imported = try HFModelFolder.read(folder: tinyFolder)
        XCTAssertEqual(imported.sourceVocab, 357)
        XCTAssertEqual(imported.config.vocab, 357 + 3 + 16)
        XCTAssertEqual(imported.addedTokenRows, Array(357..<376))
        XCTAssertEqual(imported.config.layers, 2)
        XCTAssertEqual(imported.config.width, 16)
        XCTAssertEqual(imported.config.context, 24)
        guard case .bpe(let tokenizer) = imported.tokenizer else { return XCTFail("expected a BPE tokenizer") }
        XCTAssertEqual(tokenizer.endOfText, 356)
        XCTAssertEqual(tokenizer.encode(ref.text), ref.ids, "elle's encoding differs from transformers'")
        XCTAssertEqual(Array(ref.ids.prefix(24)), ref.tokens)

        let elle = try logits(imported.config, imported.parameters, ref.tokens)
        var ours = [Float]()
        for t in 0..<ref.tokens.count { ours += elle[(t * imported.config.vocab)..<(t * imported.config.vocab + ref.vocab)] }
        let error = ours.withUnsafeBufferPointer { maxRelativeError($0.baseAddress!, ref.logits) }
        XCTAssertLessThan(error, 1e-4, "logits differ from transformers' by \(error) relative")

        // New rows are the mean of the folder's rows.
        let wte = GPTLayout(config: imported.config).tokenEmbedding, d = 16
        for j in [0, 7, 15] {
            var mean = 0.0
            for r in 0..<357 { mean += Double(imported.parameters[wte + r * d + j]) }
            XCTAssertEqual(imported.parameters[wte + 360 * d + j], Float(mean / 357), accuracy: 1e-6)
        }
    }

    /// Copies the fixture folder (without `except`) to a temporary one.
    func copyOfTinyFolder(except: [String] = []) throws -> String {
        let copy = folder + "/tiny-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: tinyFolder, toPath: copy)
        for name in except { try FileManager.default.removeItem(atPath: copy + "/" + name) }
        return copy
    }

    /// Rewrites a folder's model.safetensors through `change(name, values) -> entries to write`.
    func rewriteWeights(_ dir: String, _ change: (String, [Float], [Int]) -> [(String, [Float], [Int])]) throws {
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        var tensors: [(String, [Float], [Int])] = []
        for t in file.tensors { tensors += change(t.name, try file.floats(t.name), t.shape) }
        let buffers = tensors.map { FloatBuffer($0.1) }
        let entries = zip(tensors, buffers).map { SafeTensorsEntry(name: $0.0, shape: $0.2, floats: UnsafeBufferPointer($1.buffer)) }
        try withExtendedLifetime(buffers) { try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors") }
    }

    /// Files as openai-community/gpt2 ships them: GPT-2's vocab.json + merges.txt instead of
    /// tokenizer.json, names without "transformer.", the attention-mask buffers, a stored tied
    /// lm_head, and F16 weights. They import to the same model (F16 rounding aside).
    func testImportOfGPT2StyleFiles() throws {
        let plain = try HFModelFolder.read(folder: tinyFolder)
        let dir = try copyOfTinyFolder(except: ["tokenizer.json"])
        try rewriteWeights(dir) { name, values, shape in
            let bare = String(name.dropFirst("transformer.".count))
            var out = [(bare, values, shape)]
            if name == "transformer.wte.weight" { out.append(("lm_head.weight", values, shape)) }
            if name == "transformer.h.0.ln_1.weight" { out.append(("h.0.attn.bias", [Float](repeating: 1, count: 24 * 24), [1, 1, 24, 24])) }
            return out
        }
        let gpt2Style = try HFModelFolder.read(folder: dir)
        XCTAssertEqual(gpt2Style.config, plain.config)
        XCTAssertTrue(bitIdentical(gpt2Style.parameters.pointer, plain.parameters.pointer, plain.parameters.count))
        guard case .bpe(let a) = gpt2Style.tokenizer, case .bpe(let b) = plain.tokenizer else { return XCTFail() }
        XCTAssertEqual(a.tokenBytes, b.tokenBytes)
        XCTAssertEqual(a.specials, b.specials)

        // A stored lm_head that is not the embedding cannot be imported into a tied model.
        try rewriteWeights(dir) { name, values, shape in [(name, name == "lm_head.weight" ? values.map { $0 + 1 } : values, shape)] }
        XCTAssertThrowsError(try HFModelFolder.read(folder: dir)) {
            XCTAssertTrue("\($0)".contains("tensor lm_head.weight differs from transformer.wte.weight"), "\($0)")
        }
    }

    /// Weights split over shards named by model.safetensors.index.json import the same.
    func testImportOfShardedWeights() throws {
        let plain = try HFModelFolder.read(folder: tinyFolder)
        let dir = try copyOfTinyFolder(except: ["model.safetensors"])
        let file = try SafeTensorsFile(path: tinyFolder + "/model.safetensors")
        var map: [String: String] = [:]
        var buffers: [FloatBuffer] = []
        for (k, part) in [file.tensors.filter { $0.name.contains(".h.") }, file.tensors.filter { !$0.name.contains(".h.") }].enumerated() {
            let name = "model-0000\(k + 1)-of-00002.safetensors"
            var entries: [SafeTensorsEntry] = []
            for t in part {
                let values = FloatBuffer(try file.floats(t.name))
                buffers.append(values)
                entries.append(SafeTensorsEntry(name: t.name, shape: t.shape, floats: UnsafeBufferPointer(values.buffer)))
                map[t.name] = name
            }
            try SafeTensorsWriter.write(entries, to: dir + "/" + name)
        }
        let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": map]
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        let sharded = try HFModelFolder.read(folder: dir)
        XCTAssertEqual(sharded.config, plain.config)
        XCTAssertTrue(bitIdentical(sharded.parameters.pointer, plain.parameters.pointer, plain.parameters.count))
    }

    func testImportOfHalfPrecisionWeights() throws {
        let plain = try HFModelFolder.read(folder: tinyFolder)
        let dir = try copyOfTinyFolder()
        let file = try SafeTensorsFile(path: tinyFolder + "/model.safetensors")
        var halves: [Buffer<UInt16>] = []
        for t in file.tensors { halves.append(Buffer(try file.floats(t.name).map { Float16($0).bitPattern })) }
        let entries = zip(file.tensors, halves).map { SafeTensorsEntry(name: $0.name, dtype: .f16, shape: $0.shape, bytes: $1.rawBytes) }
        try withExtendedLifetime(halves) { try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors") }
        let half = try HFModelFolder.read(folder: dir)
        // Each value is the float32 one rounded to half precision: within half an F16 ulp (the
        // rows elle adds are means of rounded rows, so they are left out).
        let wte = GPTLayout(config: plain.config).tokenEmbedding
        let added = (wte + 16 * 357)..<(wte + 16 * 376)
        var changed = 0, worse = 0
        for i in 0..<plain.parameters.count where !added.contains(i) {
            let p = plain.parameters[i], h = half.parameters[i]
            if h != p { changed += 1 }
            if abs(h - p) > max(abs(p) * 0x1p-11, 0x1p-25) { worse += 1 }
        }
        XCTAssertEqual(worse, 0, "values further from float32 than F16 rounding")
        XCTAssertGreaterThan(changed, plain.parameters.count / 2, "F16 rounding should change most values")
    }

    func testImportRejectsWhatElleCannotRepresent() throws {
        func expectFailure(_ dir: String, _ phrase: String, line: UInt = #line) {
            XCTAssertThrowsError(try HFModelFolder.read(folder: dir), line: line) {
                XCTAssertTrue("\($0)".contains(phrase), "expected \"\(phrase)\" in: \($0)", line: line)
            }
        }
        func editConfig(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
            edit(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
        }
        let dir = try copyOfTinyFolder()
        try editConfig(dir) { $0["activation_function"] = "relu" }
        expectFailure(dir, "activation_function relu is not elle's GELU")
        try editConfig(dir) { $0["activation_function"] = "gelu_new"; $0["model_type"] = "llama" }
        expectFailure(dir, "has model_type llama; elle imports gpt2")
        try editConfig(dir) { $0["model_type"] = "gpt2"; $0["n_inner"] = 32 }
        expectFailure(dir, "tensor transformer.h.0.mlp.c_fc.weight has shape [16, 64]; config.json's model needs [16, 32]")
        try editConfig(dir) { $0["n_inner"] = NSNull(); $0["tie_word_embeddings"] = false }
        expectFailure(dir, "tie_word_embeddings = false")
        try editConfig(dir) { $0["tie_word_embeddings"] = true }
        XCTAssertNoThrow(try HFModelFolder.read(folder: dir))

        try rewriteWeights(dir) { name, values, shape in
            name == "transformer.ln_f.bias" ? [(name, values, shape), ("transformer.h.0.crossattention.q_attn.weight", values, shape)] : [(name, values, shape)]
        }
        expectFailure(dir, "has tensor transformer.h.0.crossattention.q_attn.weight, which GPT2LMHeadModel as elle maps it does not use")
        try rewriteWeights(dir) { name, values, shape in name.contains("crossattention") || name == "transformer.wpe.weight" ? [] : [(name, values, shape)] }
        expectFailure(dir, "has no tensor transformer.wpe.weight")
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        expectFailure(dir, "has no model.safetensors")
        let noTokenizer = try copyOfTinyFolder(except: ["tokenizer.json", "vocab.json"])
        expectFailure(noTokenizer, "has no tokenizer: neither tokenizer.json, vocab.txt nor vocab.json + merges.txt")
    }

    /// `--tokenizer`: an elle tokenizer with the folder's ordinary tokens but other specials (a
    /// prepared data folder's, with domain prompts). Rows follow the specials by name.
    func testImportWithAnotherTokenizerMapsSpecialsByName() throws {
        let folderTokenizer = try BPETokenizer.load(tinyFolder + "/tokenizer.json")
        let chosen = try BPETokenizer(tokenBytes: folderTokenizer.tokenBytes, merges: folderTokenizer.merges, domains: ["legal", "literature"])
        let path = folder + "/chosen.json"
        try chosen.save(to: path)
        let plain = try HFModelFolder.read(folder: tinyFolder)
        let imported = try HFModelFolder.read(folder: tinyFolder, tokenizer: path)
        XCTAssertEqual(imported.config.vocab, chosen.vocabularySize)
        XCTAssertEqual(imported.addedTokenRows, Array(357..<chosen.vocabularySize))
        let wte = GPTLayout(config: imported.config).tokenEmbedding, d = 16
        // Ordinary rows and end-of-text's row are the folder's.
        XCTAssertTrue(bitIdentical(imported.parameters.pointer + wte, plain.parameters.pointer + wte, 357 * d))
        // Everything after the embedding is the same model.
        let rest = GPTLayout(config: plain.config).positionEmbedding
        let restNew = GPTLayout(config: imported.config).positionEmbedding
        XCTAssertTrue(bitIdentical(imported.parameters.pointer + restNew, plain.parameters.pointer + rest, plain.parameters.count - rest))

        // Other ordinary tokens are refused.
        var bytes = folderTokenizer.tokenBytes
        bytes.swapAt(300, 301)
        let wrong = try BPETokenizer(tokenBytes: bytes, merges: [], domains: [])
        try wrong.save(to: path)
        XCTAssertThrowsError(try HFModelFolder.read(folder: tinyFolder, tokenizer: path)) {
            XCTAssertTrue("\($0)".contains("token 300 is"), "\($0)")
        }
    }
}
