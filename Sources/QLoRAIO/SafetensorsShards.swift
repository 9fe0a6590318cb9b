// The safetensors files of a Hugging Face checkpoint directory: those its index names, or every
// *.safetensors in it. Read by the converter and by the weights loader.
import Foundation

public enum SafetensorsShards {
    /// The shard paths of `directory`, sorted.
    public static func files(in directory: String) throws(ShardListError) -> [String] {
        let indexPath = directory + "/model.safetensors.index.json"
        if let data = FileManager.default.contents(atPath: indexPath) {
            guard case .object(let object)? = try? JSONParser.parse(Array(data)), case .object(let map)? = object["weight_map"],
                  case let names = map.members.compactMap({ $0.value.string }), names.count == map.members.count else {
                throw .badIndex(path: indexPath)
            }
            return Set(names).sorted().map { directory + "/" + $0 }
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let files = names.filter { $0.hasSuffix(".safetensors") }.sorted().map { directory + "/" + $0 }
        guard !files.isEmpty else { throw .noWeights(path: directory) }
        return files
    }
}

/// Why a checkpoint directory's shards cannot be listed.
public enum ShardListError: Error, CustomStringConvertible, Equatable {
    /// The index file has no `weight_map` object of file names.
    case badIndex(path: String)
    case noWeights(path: String)

    public var description: String {
        switch self {
        case .badIndex(let path): return "\(path): no 'weight_map' object"
        case .noWeights(let path):
            return "\(path): no *.safetensors files found (PyTorch .bin checkpoints are not supported; convert them to safetensors first)"
        }
    }
}
