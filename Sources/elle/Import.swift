import ArgumentParser
import Foundation
import Interop
import Training

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a Hugging Face model folder (GPT-2 or BERT shaped, safetensors) into an elle checkpoint.",
        discussion: """
            --from holds config.json, model.safetensors (or shards with model.safetensors.index.json; \
            F32, F16 or BF16) and tokenizer.json or GPT-2's vocab.json + merges.txt. The checkpoint \
            (step 0, no optimizer state) records its tokenizer, so `elle sample`, `elle grow` and \
            `elle train --init-from` use it. elle's tokenizer adds special tokens (<|pad|>, <|mask|>, \
            <|bos|>, domain prompts); their embedding rows start as the mean of the model's rows. \
            A BertForMaskedLM's token-type 0 embedding is added to its position embeddings (elle's \
            BERT has no token types). See docs/INTEROP.md.
            """)

    @Option(help: "A Hugging Face model folder (save_pretrained layout).") var from: String
    @Option(help: "Checkpoint file to write, its tokenizer beside it as NAME.tokenizer.json; or a folder, which gets step-00000000.ckpt, `latest` and tokenizer.json.")
    var out: String
    @Option(help: "An elle tokenizer.json to use instead of the folder's, e.g. a prepared data folder's so the model trains on it; its ordinary tokens must be the folder's, specials are matched by name.")
    var tokenizer: String?

    func run() throws {
        let model = try HFModelFolder.read(folder: from, tokenizer: tokenizer)
        var isDirectory: ObjCBool = false
        let isFolder = out.hasSuffix("/") || (FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) && isDirectory.boolValue)
        let checkpointPath: String, tokenizerPath: String
        if isFolder {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            checkpointPath = (out as NSString).appendingPathComponent("step-00000000.ckpt")
            tokenizerPath = (out as NSString).appendingPathComponent("tokenizer.json")
        } else {
            let parent = (out as NSString).deletingLastPathComponent
            if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
            checkpointPath = out
            tokenizerPath = (out as NSString).deletingPathExtension + ".tokenizer.json"
        }
        var tokenizerName = "bytes"
        if let subword = model.tokenizer.subword {
            try subword.save(to: tokenizerPath)
            // Absolute, so `elle sample` finds it from any working folder.
            tokenizerName = URL(fileURLWithPath: tokenizerPath).standardizedFileURL.path
        }
        let checkpoint = HFModelFolder.checkpoint(of: model, tokenizerName: tokenizerName, source: from)
        try checkpoint.write(to: checkpointPath)
        if isFolder { try writeFileAtomically("step-00000000.ckpt\n", to: (out as NSString).appendingPathComponent("latest")) }

        print("imported \(from) (\(model.modelClass)) as \(model.config), \(formatCount(model.config.parameterCount)) parameters")
        print("  wrote \(checkpointPath)" + (tokenizerName == "bytes" ? " (byte tokenizer)" : " and \(tokenizerPath)"))
        if !model.addedTokenRows.isEmpty {
            print("  vocabulary \(model.sourceVocab) -> \(model.config.vocab): \(model.addedTokenRows.count) special token(s) the folder lacks start from the mean embedding row")
        }
        for note in model.notes { print("  " + note) }
    }
}
