import Corpus
import Foundation
import Interop
import Model
import Tensors
import TestSupport
import XCTest

/// elle's export against what transformers computes from it, without Python at test time.
/// Tests/Fixtures/hf-export-{gpt2,bert}/ is what `elle export --format hf` wrote for a small model
/// trained on the sample, and hf-export-*-reference.safetensors what transformers
/// (GPT2LMHeadModel / BertForMaskedLM.from_pretrained, AutoTokenizer) computed from that folder
/// (scripts/make_export_fixture.py). elle must still export exactly that folder, encode the text
/// to AutoTokenizer's ids, and compute the same logits.
final class HFExportReferenceTests: XCTestCase {
    var folder = ""
    override func setUp() {
        folder = temporaryFolder("hf-export-reference")
        Parallel.configure(threads: 2)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func check(_ name: String, modelClass: String) throws {
        let exported = fixtureURL("hf-export-\(name)").path
        let files = ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"]

        // 1. Exporting the folder's model again writes the same bytes, so the reference logits are
        //    transformers' reading of elle's export as it is now.
        let model = try HFModelFolder.read(folder: exported)
        XCTAssertEqual(model.modelClass, modelClass)
        XCTAssertEqual(model.addedTokenRows, [], "the folder holds elle's own tokenizer")
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exported + "/config.json"))) as? [String: Any])
        let provenance = try XCTUnwrap(config["elle"] as? [String: String], "elle's provenance in config.json")
        try HFModelFolder.write(config: model.config, parameters: model.parameters, tokenizer: model.tokenizer, to: folder,
                                provenance: provenance)
        for file in files {
            let again = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + file))
            XCTAssertEqual(again, try Data(contentsOf: URL(fileURLWithPath: exported + "/" + file)),
                           "\(file) differs from the export transformers read: rerun scripts/make_export_fixture.py if the change is meant")
        }

        // 2. AutoTokenizer's ids are elle's.
        let reference = try SafeTensorsFile(path: fixtureURL("hf-export-\(name)-reference.safetensors").path)
        func ints(_ tensor: String) throws -> [Int32] {
            Array(reference.bytes(of: try XCTUnwrap(reference.tensor(tensor))).bindMemory(to: Int64.self)).map { Int32($0) }
        }
        guard case .bpe(let tokenizer) = model.tokenizer else { return XCTFail("expected a BPE tokenizer") }
        let text = try XCTUnwrap(reference.metadata["text"])
        XCTAssertEqual(tokenizer.encode(text), try ints("ids"), "elle's encoding differs from AutoTokenizer's")

        // 3. Logits at every position, to 1e-5 relative (max |elle - transformers| / max |transformers|):
        //    both compute in float32 and differ only in summation order (about 1e-6 measured).
        let tokens = try ints("tokens")
        let shape = try XCTUnwrap(reference.tensor("logits")).shape
        XCTAssertEqual(shape, [tokens.count / model.config.context, model.config.context, model.config.vocab])
        let expected = try reference.floats("logits")
        let elle = try makeModel(config: model.config, parameters: model.parameters)
        tokens.withUnsafeBufferPointer { _ = elle.forward(tokens: $0.baseAddress!, targets: nil, batch: shape[0], seq: shape[1]) }
        XCTAssertEqual(elle.logitRowCount, shape[0] * shape[1])
        let error = maxRelativeError(elle.logits, expected)
        XCTAssertLessThan(error, 1e-5, "logits differ from transformers' by \(error) relative")
        print("hf-export-\(name): \(modelClass) from elle's export, \(shape) logits, relative error \(error)")
    }

    func testGPTExportMatchesTransformers() throws {
        try check("gpt2", modelClass: "GPT2LMHeadModel")
    }

    /// With <|mask|> tokens, padding (attention_mask = token != <|pad|>) and a domain prompt.
    func testBERTExportMatchesTransformers() throws {
        try check("bert", modelClass: "BertForMaskedLM")
    }
}
