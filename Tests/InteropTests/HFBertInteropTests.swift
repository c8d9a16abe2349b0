import Corpus
import Foundation
import Interop
import Model
import Tensors
import TestSupport
import XCTest

/// BERT to and from Hugging Face's BertForMaskedLM.
final class HFBertInteropTests: XCTestCase {
    var folder = ""
    override func setUp() { folder = temporaryFolder("hf-bert-interop") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func sampleTokenizer() throws -> BPETokenizer {
        let text = Array(FileManager.default.contents(atPath: try TextCorpus.listFiles(sampleDataPath())[0])!)
        return try text.withUnsafeBufferPointer {
            try BPETrainer.train(documents: [$0], vocabularySize: 300, domains: ["literature", "legal"])
        }
    }

    /// Odd sizes, a depth-grown lineage, non-default numerics, and the pad token elle's BERT masks.
    func oddConfig(vocab: Int, pad: Int32) -> ModelConfig {
        var c = ModelConfig(architecture: .bert, layers: 3, width: 24, heads: 3, vocab: vocab, context: 13, ffn: 40,
                            dropout: 0.05, layerNormEpsilon: 1e-6)
        c.layerOrigins = [0, 1, 1]
        c.padToken = pad
        return c
    }

    func randomParameters(_ config: ModelConfig) -> FloatBuffer {
        let p = FloatBuffer(count: config.parameterCount)
        fillUniform(p.pointer, p.count, scale: 0.5, seed: 11)
        return p
    }

    /// Export then import: the same tensors bit for bit, config and tokenizer; the file holds
    /// BertForMaskedLM's names, q/k/v as slices of elle's fused qkv, a zero token-type row, the
    /// MLM output bias and no decoder weight (tied).
    func testExportThenImportIsExact() throws {
        let tokenizer = try sampleTokenizer()
        let config = oddConfig(vocab: tokenizer.vocabularySize + 3, pad: tokenizer.pad)
        let parameters = randomParameters(config)
        let summary = try HFModelFolder.write(config: config, parameters: parameters, tokenizer: .bpe(tokenizer), to: folder)
        XCTAssertEqual(summary.modelClass, "BertForMaskedLM")
        let imported = try HFModelFolder.read(folder: folder)
        XCTAssertEqual(imported.config, config)
        XCTAssertEqual(imported.modelClass, "BertForMaskedLM")
        XCTAssertEqual(imported.addedTokenRows, [])
        XCTAssertEqual(imported.notes, [], "a zero token-type row changes nothing")
        XCTAssertTrue(bitIdentical(imported.parameters.pointer, parameters.pointer, parameters.count), "parameters differ")
        guard case .bpe(let back) = imported.tokenizer else { return XCTFail("expected a BPE tokenizer") }
        XCTAssertEqual(back.tokenBytes, tokenizer.tokenBytes)
        XCTAssertEqual(back.specials, tokenizer.specials)

        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        let layout = BERTLayout(config: config)
        // 4 embedding tensors + token types, 16 per layer, 5 in the head.
        XCTAssertEqual(file.tensors.count, 5 + 16 * 3 + 5)
        XCTAssertNil(file.tensor("cls.predictions.decoder.weight"))
        XCTAssertEqual(file.tensor("bert.embeddings.word_embeddings.weight")?.shape, [config.vocab, 24])
        XCTAssertEqual(file.tensor("bert.embeddings.position_embeddings.weight")?.shape, [13, 24])
        XCTAssertEqual(try file.floats("bert.embeddings.token_type_embeddings.weight"), [Float](repeating: 0, count: 24))
        XCTAssertEqual(file.tensor("bert.encoder.layer.2.intermediate.dense.weight")?.shape, [40, 24])
        XCTAssertEqual(file.tensor("bert.encoder.layer.2.output.dense.weight")?.shape, [24, 40])
        let bias = try file.floats("cls.predictions.bias")
        XCTAssertEqual(bias.count, config.vocab)
        XCTAssertEqual(bias[7].bitPattern, parameters[layout.outputBias + 7].bitPattern)
        // query, key, value are rows 0..<24, 24..<48, 48..<72 of elle's qkv ([out, in] both).
        let qkv = layout.blocks[1].qkvWeight, qkvBias = layout.blocks[1].qkvBias
        for (k, name) in ["query", "key", "value"].enumerated() {
            let w = try file.floats("bert.encoder.layer.1.attention.self.\(name).weight")
            let b = try file.floats("bert.encoder.layer.1.attention.self.\(name).bias")
            XCTAssertEqual(w.count, 24 * 24)
            for (o, i) in [(0, 0), (5, 17), (23, 23)] {
                XCTAssertEqual(w[o * 24 + i].bitPattern, parameters[qkv + (k * 24 + o) * 24 + i].bitPattern, name)
            }
            XCTAssertEqual(b[3].bitPattern, parameters[qkvBias + k * 24 + 3].bitPattern, name)
        }

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as! [String: Any]
        XCTAssertEqual(json["architectures"] as? [String], ["BertForMaskedLM"])
        XCTAssertEqual(json["model_type"] as? String, "bert")
        XCTAssertEqual(json["hidden_size"] as? Int, 24)
        XCTAssertEqual(json["num_hidden_layers"] as? Int, 3)
        XCTAssertEqual(json["num_attention_heads"] as? Int, 3)
        XCTAssertEqual(json["intermediate_size"] as? Int, 40)
        XCTAssertEqual(json["max_position_embeddings"] as? Int, 13)
        XCTAssertEqual(json["type_vocab_size"] as? Int, 1)
        XCTAssertEqual(json["hidden_act"] as? String, "gelu")
        XCTAssertEqual(json["layer_norm_eps"] as? Double, 1e-6)
        XCTAssertEqual(json["hidden_dropout_prob"] as? Double, 0.05)
        XCTAssertEqual(json["pad_token_id"] as? Int, Int(tokenizer.pad))
        XCTAssertEqual(json["bos_token_id"] as? Int, Int(tokenizer.beginOfSequence))
        XCTAssertEqual(json["tie_word_embeddings"] as? Bool, true)
        let tokenizerConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer_config.json"))) as! [String: Any]
        XCTAssertEqual(tokenizerConfig["mask_token"] as? String, "<|mask|>")
        XCTAssertEqual(tokenizerConfig["pad_token"] as? String, "<|pad|>")
        XCTAssertEqual(tokenizerConfig["cls_token"] as? String, "<|bos|>")
    }

    func testExportRefusesTheByteTokenizer() throws {
        let config = oddConfig(vocab: 257, pad: 0)
        XCTAssertThrowsError(try HFModelFolder.write(config: config, parameters: randomParameters(config), tokenizer: .bytes, to: folder)) {
            XCTAssertTrue("\($0)".contains("needs a BPE tokenizer with <|mask|>"), "\($0)")
        }
    }

    // MARK: a model saved by transformers

    var tinyFolder: String { fixtureURL("hf-bert-tiny").path }

    /// A BertForMaskedLM saved by transformers (scripts/make_interop_fixture.py: two token types,
    /// epsilon 1e-12, an elle-layout BPE tokenizer) imports; on its reference sequences (plain
    /// text, masks with padding at the end, random ids) elle's logits at every position match
    /// transformers' to 1e-4 relative (TESTING.md).
    func testImportOfTransformersModelMatchesItsLogits() throws {
        let imported = try HFModelFolder.read(folder: tinyFolder)
        let c = imported.config
        XCTAssertEqual(imported.modelClass, "BertForMaskedLM")
        XCTAssertEqual(c.architecture, .bert)
        XCTAssertEqual([c.layers, c.width, c.heads, c.ffn, c.context], [2, 16, 4, 40, 24])
        XCTAssertEqual(c.layerNormEpsilon, 1e-12)
        XCTAssertEqual(imported.sourceVocab, 360)
        XCTAssertEqual(c.vocab, 360 + 16, "16 spare domain prompts added")
        XCTAssertEqual(imported.addedTokenRows, Array(360..<376))
        XCTAssertEqual(c.padToken, 357)
        XCTAssertEqual(imported.notes.count, 2, "\(imported.notes)")
        XCTAssertTrue(imported.notes[0].contains("token type 0's embedding is added to every position embedding"), "\(imported.notes)")
        XCTAssertTrue(imported.notes[1].contains("token types 1..<2 are dropped"), "\(imported.notes)")
        guard case .bpe(let tokenizer) = imported.tokenizer else { return XCTFail("expected a BPE tokenizer") }
        XCTAssertEqual([tokenizer.pad, tokenizer.mask, tokenizer.beginOfSequence], [357, 358, 359])

        let reference = try SafeTensorsFile(path: fixtureURL("hf-bert-tiny-reference.safetensors").path)
        let tokens = Array(reference.bytes(of: reference.tensor("tokens")!).bindMemory(to: Int64.self)).map { Int32($0) }
        let expected = try reference.floats("logits")
        let shape = reference.tensor("logits")!.shape  // [3, 24, 360]
        XCTAssertEqual(shape, [3, 24, 360])
        XCTAssertTrue(tokens.contains(357) && tokens.contains(358), "the reference has padding and masks")
        // The text encodes to transformers' ids.
        let text = try String(contentsOf: fixtureURL("hf-gpt2-tiny-reference.txt"), encoding: .utf8)
        XCTAssertEqual(Array(([tokenizer.beginOfSequence] + tokenizer.encode(text)).prefix(24)), Array(tokens.prefix(24)))

        let model = try BERT(config: c, parameters: imported.parameters)
        tokens.withUnsafeBufferPointer { _ = model.forward(tokens: $0.baseAddress!, targets: nil, batch: 3, seq: 24) }
        XCTAssertEqual(model.predictedCount, 3 * 24)
        var ours = [Float]()
        for row in 0..<(3 * 24) { ours += UnsafeBufferPointer(start: model.logits + row * c.vocab, count: 360) }
        let error = ours.withUnsafeBufferPointer { maxRelativeError($0.baseAddress!, expected) }
        XCTAssertLessThan(error, 1e-4, "logits differ from transformers' by \(error) relative")
        print("hf-bert-tiny: logits relative error \(error) over \(expected.count) logits")
    }

    func copyOfTinyFolder() throws -> String {
        let copy = folder + "/tiny-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: tinyFolder, toPath: copy)
        return copy
    }

    func editConfig(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: dir + "/config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }

    func rewriteWeights(_ dir: String, _ change: (String, [Float], [Int]) -> [(String, [Float], [Int])]) throws {
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        var tensors: [(String, [Float], [Int])] = []
        for t in file.tensors { tensors += change(t.name, try file.floats(t.name), t.shape) }
        let buffers = tensors.map { FloatBuffer($0.1) }
        let entries = zip(tensors, buffers).map { SafeTensorsEntry(name: $0.0, shape: $0.2, floats: UnsafeBufferPointer($1.buffer)) }
        try withExtendedLifetime(buffers) { try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors") }
    }

    /// Files as older BERT checkpoints ship them (bert-base-uncased: BertForPreTraining): the
    /// pooler and next-sentence head, the position_ids buffer, the tied decoder weight and bias
    /// stored, LayerNorm gamma/beta, no "bert." prefix on the base model. They import to the same
    /// model.
    func testImportOfOlderBertFiles() throws {
        let plain = try HFModelFolder.read(folder: tinyFolder)
        let dir = try copyOfTinyFolder()
        try rewriteWeights(dir) { name, values, shape in
            var bare = name.hasPrefix("bert.") ? String(name.dropFirst(5)) : name
            if bare.hasSuffix("LayerNorm.weight") { bare = String(bare.dropLast(6)) + "gamma" }
            if bare.hasSuffix("LayerNorm.bias") { bare = String(bare.dropLast(4)) + "beta" }
            var out = [(bare, values, shape)]
            if name == "bert.embeddings.word_embeddings.weight" { out.append(("cls.predictions.decoder.weight", values, shape)) }
            if name == "cls.predictions.bias" { out.append(("cls.predictions.decoder.bias", values, shape)) }
            if name == "bert.embeddings.position_embeddings.weight" {
                out += [("embeddings.position_ids", (0..<24).map(Float.init), [1, 24]),
                        ("pooler.dense.weight", [Float](repeating: 0.5, count: 256), [16, 16]), ("pooler.dense.bias", [Float](repeating: 0, count: 16), [16]),
                        ("cls.seq_relationship.weight", [Float](repeating: 0.5, count: 32), [2, 16]), ("cls.seq_relationship.bias", [0, 0], [2])]
            }
            return out
        }
        let old = try HFModelFolder.read(folder: dir)
        XCTAssertEqual(old.config, plain.config)
        XCTAssertTrue(bitIdentical(old.parameters.pointer, plain.parameters.pointer, plain.parameters.count))

        // A stored decoder bias that is not the output bias cannot be imported into a tied model.
        try rewriteWeights(dir) { name, values, shape in [(name, name == "cls.predictions.decoder.bias" ? values.map { $0 + 1 } : values, shape)] }
        XCTAssertThrowsError(try HFModelFolder.read(folder: dir)) {
            XCTAssertTrue("\($0)".contains("tensor cls.predictions.decoder.bias differs from cls.predictions.bias (head.bias in elle)"), "\($0)")
        }
    }

    /// Malformed or unsupported files get an error naming the file and the field or tensor.
    func testImportRejectsWhatElleCannotRepresent() throws {
        func expectFailure(_ dir: String, _ phrase: String, line: UInt = #line) {
            XCTAssertThrowsError(try HFModelFolder.read(folder: dir), line: line) {
                XCTAssertTrue("\($0)".contains(phrase), "expected \"\(phrase)\" in: \($0)", line: line)
            }
        }
        let dir = try copyOfTinyFolder()
        let config = dir + "/config.json"
        try editConfig(dir) { $0["hidden_act"] = "relu" }
        expectFailure(dir, config + ": hidden_act relu is not elle's BERT GELU")
        try editConfig(dir) { $0["hidden_act"] = "gelu"; $0["position_embedding_type"] = "relative_key" }
        expectFailure(dir, "position_embedding_type relative_key is not absolute")
        try editConfig(dir) { $0["position_embedding_type"] = "absolute"; $0["is_decoder"] = true }
        expectFailure(dir, "has is_decoder = true; elle needs false")
        try editConfig(dir) { $0["is_decoder"] = false; $0["tie_word_embeddings"] = false }
        expectFailure(dir, "has tie_word_embeddings = false")
        try editConfig(dir) { $0["tie_word_embeddings"] = true; $0["hidden_size"] = nil }
        expectFailure(dir, config + ": has no integer field hidden_size")
        try editConfig(dir) { $0["hidden_size"] = "16" }
        expectFailure(dir, config + ": field hidden_size is not an integer")
        try editConfig(dir) { $0["hidden_size"] = 16; $0["num_attention_heads"] = 5 }
        expectFailure(dir, config + ": describes a model elle cannot build: invalid model config: heads must divide width")
        try editConfig(dir) { $0["num_attention_heads"] = 4; $0["intermediate_size"] = 32 }
        expectFailure(dir, "tensor bert.encoder.layer.0.intermediate.dense.weight has shape [40, 16]; config.json's model needs [32, 16]")
        try editConfig(dir) { $0["intermediate_size"] = 40 }
        XCTAssertNoThrow(try HFModelFolder.read(folder: dir))

        try rewriteWeights(dir) { name, values, shape in
            name == "bert.embeddings.token_type_embeddings.weight" ? [(name, Array(values.prefix(30)), [2, 15])] : [(name, values, shape)]
        }
        expectFailure(dir, "tensor bert.embeddings.token_type_embeddings.weight has shape [2, 15]; config.json's model needs [type_vocab_size, 16]")
        try rewriteWeights(dir) { name, values, shape in
            name.hasPrefix("bert.embeddings.token_type") ? [] : [(name, values, shape)]
                + (name == "cls.predictions.bias" ? [("bert.encoder.layer.0.crossattention.self.query.weight", values, shape)] : [])
        }
        expectFailure(dir, "has tensor bert.encoder.layer.0.crossattention.self.query.weight, which BertForMaskedLM as elle maps it does not use")
        try rewriteWeights(dir) { name, values, shape in name.contains("crossattention") || name.hasSuffix("self.key.bias") && name.contains("layer.1") ? [] : [(name, values, shape)] }
        expectFailure(dir, "has no tensor bert.encoder.layer.1.attention.self.key.bias (nor encoder.layer.1.attention.self.key.bias), needed for elle's blocks.1.attn.qkv.bias")

        // A WordPiece tokenizer (as public BERTs ship) is read (HFWordPieceInteropTests), but one
        // without the special tokens BERT needs is refused, naming the missing one.
        let wordPiece = try copyOfTinyFolder()
        let model: [String: Any] = ["type": "WordPiece", "unk_token": "[UNK]", "vocab": ["[PAD]": 0, "[UNK]": 1, "a": 2]]
        try JSONSerialization.data(withJSONObject: ["version": "1.0", "added_tokens": [], "model": model])
            .write(to: URL(fileURLWithPath: wordPiece + "/tokenizer.json"))
        expectFailure(wordPiece, wordPiece + "/tokenizer.json: has no [MASK] token (mask) in its vocabulary")
    }

    /// elle's own export of a trained BERT (via the CLI) is covered in ElleTests/InteropCLITests;
    /// here: a model without token types imports with no notes, and its logits are elle's.
    func testImportWithoutTokenTypesNeedsNoFold() throws {
        let dir = try copyOfTinyFolder()
        try rewriteWeights(dir) { name, values, shape in name.hasPrefix("bert.embeddings.token_type") ? [] : [(name, values, shape)] }
        let imported = try HFModelFolder.read(folder: dir)
        XCTAssertEqual(imported.notes, [])
        let plain = try HFModelFolder.read(folder: tinyFolder)
        let wpe = BERTLayout(config: plain.config).positionEmbedding
        // Everything but the position embedding is the same.
        XCTAssertTrue(bitIdentical(imported.parameters.pointer, plain.parameters.pointer, wpe))
        XCTAssertFalse(bitIdentical(imported.parameters.pointer + wpe, plain.parameters.pointer + wpe, 24 * 16))
    }
}
