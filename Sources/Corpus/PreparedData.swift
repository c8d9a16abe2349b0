import Dispatch
import Foundation
import Tensors

/// A prepared data folder: its manifest, tokenizer and shards.
public struct PreparedData {
    public let folder: String
    public let manifest: DataManifest

    /// True when `folder` holds a manifest.json (raw text folders do not).
    public static func isPrepared(_ folder: String) -> Bool {
        FileManager.default.fileExists(atPath: folder + "/" + DataManifest.fileName)
    }

    public init(folder: String) throws {
        self.folder = folder
        let path = folder + "/" + DataManifest.fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(path: path, "does not exist (prepare the folder with `elle data prepare`)")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do { manifest = try decoder.decode(DataManifest.self, from: data) } catch {
            throw DataError(path: path, "is not a valid data manifest: \(error)")
        }
        guard manifest.format == "elle-data", manifest.version == 1 else {
            throw DataError(path: path, "has format \(manifest.format) version \(manifest.version); expected elle-data version 1")
        }
    }

    public var tokenizerPath: String { folder + "/" + manifest.tokenizer.file }

    public func tokenizer() throws -> SubwordTokenizer { try TokenizerFile.load(tokenizerPath) }

    /// The named domain, or the only one when `name` is nil.
    public func domain(_ name: String?) throws -> DataManifest.Domain {
        let names = manifest.domains.map(\.name).joined(separator: ", ")
        guard let name else {
            guard manifest.domains.count == 1 else {
                throw DataError(path: folder, "holds several domains (\(names)); choose one with --domain")
            }
            return manifest.domains[0]
        }
        guard let domain = manifest.domains.first(where: { $0.name == name }) else {
            throw DataError(path: folder, "has no domain \(name) (domains: \(names))")
        }
        return domain
    }

    /// The split's shards, mapped and verified against the manifest.
    public func stream(_ split: DataManifest.Split) throws -> TokenStream {
        let shards = try split.shards.map { entry -> Shard in
            let shard = try Shard(path: folder + "/" + entry.file)
            guard shard.count == entry.tokens, String(shard.checksum, radix: 16) == entry.xxh64 else {
                throw DataError(path: shard.path, "does not match manifest.json (tokens or checksum differ); prepare again")
            }
            guard shard.vocabularySize <= manifest.tokenizer.vocabularySize else {
                throw DataError(path: shard.path, "has vocabulary \(shard.vocabularySize), larger than the tokenizer's \(manifest.tokenizer.vocabularySize)")
            }
            return shard
        }
        return TokenStream(shards: shards)
    }
}

extension String {
    /// FNV-1a of the UTF-8 bytes: a hash that is the same in every process (Swift's is seeded).
    var hashValueStable: UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
