import Corpus
import Foundation
import Interop
import Model
import Tensors
import TestSupport
import XCTest

final class HFWordPieceInteropTests: XCTestCase {
    let source = fixtureURL("hf-bert-wordpiece").path

    /// Must show 3 (second part): a BertForMaskedLM with a WordPiece tokenizer, saved by
    /// transformers' save_pretrained (scripts/make_wordpiece_fixture.py model), imports: its
    /// vocabulary keeps its ids (the 16 spare prompts appended start from the mean row), the text
    /// encodes to BertTokenizerFast's ids, and on its three reference sequences (text with
    /// [CLS]/[SEP], the same with [MASK]s and padding, random ids) elle's logits at every position
    /// match transformers' to 1e-4 relative (TESTING.md).
    func testImportOfWordPieceBertMatchesItsLogits() throws {
        let imported = try HFModelFolder.read(folder: source)
        let c = imported.config
        XCTAssertEqual(imported.modelClass, "BertForMaskedLM")
        XCTAssertEqual([c.layers, c.width, c.heads, c.ffn, c.context], [2, 32, 4, 72, 32])
        XCTAssertEqual(imported.sourceVocab, 512)
        XCTAssertEqual(c.vocab, 512 + 16, "16 spare domain prompts appended")
        XCTAssertEqual(imported.addedTokenRows, Array(512..<528))
        guard case .wordPiece(let tokenizer) = imported.tokenizer else { return XCTFail("expected a WordPiece tokenizer") }
        XCTAssertEqual([tokenizer.pad, tokenizer.unknown, tokenizer.beginOfSequence, tokenizer.endOfText, tokenizer.mask], [0, 1, 2, 3, 4])
        XCTAssertEqual(c.padToken, 0)
        XCTAssertTrue(imported.notes.contains { $0.contains("token types 1..<2 are dropped") }, "\(imported.notes)")

        let reference = try SafeTensorsFile(path: fixtureURL("hf-bert-wordpiece-reference.safetensors").path)
        let tokens = Array(reference.bytes(of: reference.tensor("tokens")!).bindMemory(to: Int64.self)).map { Int32($0) }
        let expected = try reference.floats("logits")
        XCTAssertEqual(reference.tensor("logits")!.shape, [3, 32, 512])
        XCTAssertTrue(tokens.contains(0) && tokens.contains(4), "the reference has padding and masks")
        let text = try String(contentsOf: fixtureURL("hf-bert-wordpiece-reference.txt"), encoding: .utf8)
        XCTAssertEqual([tokenizer.beginOfSequence] + tokenizer.encode(text).prefix(30) + [tokenizer.endOfText], Array(tokens.prefix(32)))

        let model = try BERT(config: c, parameters: imported.parameters)
        tokens.withUnsafeBufferPointer { _ = model.forward(tokens: $0.baseAddress!, targets: nil, batch: 3, seq: 32) }
        var ours = [Float]()
        for row in 0..<(3 * 32) { ours += UnsafeBufferPointer(start: model.logits + row * c.vocab, count: 512) }
        let error = ours.withUnsafeBufferPointer { maxRelativeError($0.baseAddress!, expected) }
        XCTAssertLessThan(error, 1e-4, "logits differ from transformers' by \(error) relative")
        print("hf-bert-wordpiece: logits relative error \(error) over \(expected.count) logits")
    }

    /// Export of the imported model writes a WordPiece tokenizer.json and BertTokenizer config,
    /// and imports back to the same tensors and tokenizer; `--tokenizer` with a prepared folder's
    /// WordPiece (its prompts assigned) maps rows by id, and a different vocabulary is refused.
    func testExportImportAndTokenizerOverride() throws {
        let folder = temporaryFolder("hf-wordpiece")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let imported = try HFModelFolder.read(folder: source)
        try HFModelFolder.write(config: imported.config, parameters: imported.parameters, tokenizer: imported.tokenizer, to: folder + "/out")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/out/tokenizer_config.json"))) as! [String: Any]
        XCTAssertEqual(config["tokenizer_class"] as? String, "BertTokenizer")
        XCTAssertEqual(config["mask_token"] as? String, "[MASK]")
        let again = try HFModelFolder.read(folder: folder + "/out")
        XCTAssertEqual(again.config, imported.config)
        XCTAssertTrue(bitIdentical(again.parameters.pointer, imported.parameters.pointer, imported.parameters.count))
        guard case .wordPiece(let a) = again.tokenizer, case .wordPiece(let b) = imported.tokenizer else { return XCTFail() }
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertEqual(a.specials, b.specials)

        let prepared = try XCTUnwrap(try TokenizerFile.load(source + "/tokenizer.json") as? WordPieceTokenizer)
        try prepared.assignPrompt(domain: "legal")
        try prepared.save(to: folder + "/prepared.json")
        let withPrompts = try HFModelFolder.read(folder: source, tokenizer: folder + "/prepared.json")
        XCTAssertEqual(withPrompts.config.vocab, 528)
        guard case .wordPiece(let p) = withPrompts.tokenizer else { return XCTFail() }
        XCTAssertEqual(p.promptId(domain: "legal"), 512)
        XCTAssertTrue(bitIdentical(withPrompts.parameters.pointer, imported.parameters.pointer, imported.parameters.count))

        let other = try WordPieceTokenizer(tokens: prepared.tokens.map { $0 == "the" ? "zzqx" : $0 })
        try other.save(to: folder + "/other.json")
        XCTAssertThrowsError(try HFModelFolder.read(folder: source, tokenizer: folder + "/other.json")) {
            XCTAssertTrue("\($0)".contains("differ from id"), "\($0)")
        }
    }
}
