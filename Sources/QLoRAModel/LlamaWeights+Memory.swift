// What the frozen weights cost in RAM and how to give it back: the mapped bytes per decoder layer
// (for the memory planner, read from the headers alone) and the release of a layer's pages after
// use, so a model larger than the RAM budget streams through the page cache.
import Foundation
import QLoRAIO

/// Bytes of a checkpoint's tensors as mapped from its files.
public struct WeightBytes: Sendable, Equatable {
    /// Per decoder layer (all its tensors).
    public var layers: [Int]
    /// Everything else: embeddings, lm_head, final norm.
    public var shared: Int
    public var total: Int { layers.reduce(shared, +) }

    public init(layers: [Int], shared: Int) {
        self.layers = layers
        self.shared = shared
    }
}

extension LlamaWeights {
    /// The mapped bytes of the checkpoint in `directory`, from the safetensors headers only (no
    /// tensor data is read).
    public static func mappedBytes(directory: String, layers: Int) throws(ModelError) -> WeightBytes {
        var entries: [(file: Int, tensor: SafetensorsTensor)] = []
        do {
            for (index, path) in try SafetensorsShards.files(in: directory).enumerated() {
                entries += try SafetensorsFile(path: path).tensors.map { (index, $0) }
            }
        } catch {
            throw .file(path: directory, detail: "\(error)")
        }
        let grouped = groupByLayer(entries, layers: layers)
        let layerBytes = grouped.map { $0.reduce(0) { $0 + $1.tensor.byteCount } }
        return WeightBytes(layers: layerBytes, shared: entries.reduce(0) { $0 + $1.tensor.byteCount } - layerBytes.reduce(0, +))
    }

    /// The tensors named `model.layers.<l>.*`, grouped by l.
    static func groupByLayer(_ entries: [(file: Int, tensor: SafetensorsTensor)], layers: Int) -> [[(file: Int, tensor: SafetensorsTensor)]] {
        var grouped = [[(file: Int, tensor: SafetensorsTensor)]](repeating: [], count: layers)
        let prefix = "model.layers."
        for entry in entries where entry.tensor.name.hasPrefix(prefix) {
            let rest = entry.tensor.name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= 0 && layer < layers {
                grouped[layer].append(entry)
            }
        }
        return grouped
    }

    /// Gives back the RAM of layer `layer`'s mapped weight pages (`MADV_DONTNEED`); the next use
    /// reads them again from the page cache or the disk. Norms and biases are copies and stay.
    public func releaseLayer(_ layer: Int) {
        for (file, tensor) in layerTensors[layer] { files[file].file.release(offset: tensor.fileOffset, count: tensor.byteCount) }
    }
}
