// Which output tensors go into which safetensors shard, with the names and shapes transformers
// uses for bitsandbytes 4-bit weights (FORMATS.md table).
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAQuant

struct ShardPlan {
    struct Item {
        let source: SourceTensor
        let quantized: Bool
        /// Tensors written up front (the quant_state JSON is appended late).
        let planned: [SafetensorsWriter.Planned]
        /// Output bytes, the JSON estimated.
        let bytes: Int
    }

    let shards: [[Item]]

    init(tensors: [SourceTensor], encoding: FloatEncoding, maxShardBytes: Int) {
        let dtype: SafetensorsDType = encoding == .float32 ? .F32 : encoding == .float16 ? .F16 : .BF16
        var shards: [[Item]] = [[]]
        var shardBytes = 0
        for tensor in tensors {
            let item: Item
            if isQuantizedLinear(tensor.name, shape: tensor.shape) {
                let n = tensor.elementCount
                let blocks = (n + NF4.defaultBlockSize - 1) / NF4.defaultBlockSize
                let groups = (blocks + DoubleQuantizedAbsmax.nestedBlockSize - 1) / DoubleQuantizedAbsmax.nestedBlockSize
                let planned: [SafetensorsWriter.Planned] = [
                    .init(name: tensor.name, dtype: .U8, shape: [(n + 1) / 2, 1]),
                    .init(name: tensor.name + ".absmax", dtype: .U8, shape: [blocks]),
                    .init(name: tensor.name + ".quant_map", dtype: .F32, shape: [16]),
                    .init(name: tensor.name + ".nested_absmax", dtype: .F32, shape: [groups]),
                    .init(name: tensor.name + ".nested_quant_map", dtype: .F32, shape: [256]),
                ]
                item = Item(source: tensor, quantized: true, planned: planned, bytes: planned.reduce(0) { $0 + $1.byteCount } + 200)
            } else {
                let planned = [SafetensorsWriter.Planned(name: tensor.name, dtype: dtype, shape: tensor.shape)]
                item = Item(source: tensor, quantized: false, planned: planned, bytes: planned[0].byteCount)
            }
            if shardBytes + item.bytes > maxShardBytes && !shards[shards.count - 1].isEmpty {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(item)
            shardBytes += item.bytes
        }
        self.shards = shards
    }

    func fileName(_ index: Int) -> String {
        shards.count == 1 ? "model.safetensors"
            : String(format: "model-%05d-of-%05d.safetensors", index + 1, shards.count)
    }

    /// model.safetensors.index.json: total size and tensor -> file for every stored tensor.
    func indexJSON() -> [UInt8] {
        var weightMap: [String: String] = [:]
        var total = 0
        for (index, shard) in shards.enumerated() {
            for item in shard {
                for tensor in item.planned { weightMap[tensor.name] = fileName(index) }
                if item.quantized { weightMap[item.source.name + ".quant_state.bitsandbytes__nf4"] = fileName(index) }
                total += item.bytes
            }
        }
        let object: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        return Array((PythonJSON.encode(object) + "\n").utf8)
    }
}
