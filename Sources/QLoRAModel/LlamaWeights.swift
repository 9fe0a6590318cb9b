// The frozen weights of a Llama-family decoder, read from a Hugging Face directory: either a
// bitsandbytes 4-bit checkpoint (as `quantize` or transformers writes it) or plain F32/F16/BF16
// safetensors. Large matrices stay in the memory-mapped files and are decoded tile by tile;
// only norms and biases are copied out as Float32.
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAQuant

/// The seven projections of a decoder layer, in Hugging Face order.
public enum Projection: String, CaseIterable, Sendable, Codable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj", gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// (out features, in features) of this projection's weight in a model of `shape`.
    public func features(in shape: ModelShape) -> (out: Int, in: Int) {
        let C = shape.hiddenSize, F = shape.intermediateSize
        let q = shape.heads * shape.headDim, kv = shape.kvHeads * shape.headDim
        switch self {
        case .q: return (q, C)
        case .k, .v: return (kv, C)
        case .o: return (C, q)
        case .gate, .up: return (F, C)
        case .down: return (C, F)
        }
    }

    /// The module path inside a layer, e.g. "self_attn.q_proj".
    public var modulePath: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn." + rawValue
        case .gate, .up, .down: return "mlp." + rawValue
        }
    }
}

/// One decoder layer's frozen weights. Norm weights (C) and biases are Float32 owned by `LlamaWeights`.
public struct LayerWeights: @unchecked Sendable {
    public var attentionNorm: UnsafePointer<Float>
    public var mlpNorm: UnsafePointer<Float>
    /// Indexed by `Projection`: (out features, in features).
    public var projections: [Projection: FrozenMatrix]
    /// Biases (out features) where the architecture has them (qwen2 q/k/v, Llama `mlp_bias`).
    public var biases: [Projection: UnsafePointer<Float>]

    public subscript(_ projection: Projection) -> FrozenMatrix { projections[projection]! }
}

/// Why a model could not be loaded; each names the file or tensor and what to do.
public enum ModelError: Error, CustomStringConvertible {
    case config(ModelConfigError)
    case file(path: String, detail: String)
    case tensor(path: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case .config(let error): return error.description
        case .file(let path, let detail): return pathMessage(path, detail)
        case .tensor(let path, let tensor, let detail): return "\(path): tensor '\(tensor)': \(detail)"
        }
    }
}

/// All frozen weights of a model, borrowing the mapped checkpoint files.
public final class LlamaWeights: @unchecked Sendable {
    public let shape: ModelShape
    public let directory: String
    /// (V, C). The lm_head when embeddings are tied.
    public let embedding: FrozenMatrix
    public let finalNorm: UnsafePointer<Float>
    /// (V, C): `embedding` when tied.
    public let lmHead: FrozenMatrix
    public let layers: [LayerWeights]
    /// True when the decoder projections are NF4.
    public let isQuantized: Bool

    let files: [SafetensorsFile]
    private var owned: [UnsafeMutableRawPointer] = []
    /// The mapped tensors of each decoder layer, for `releaseLayer`.
    let layerTensors: [[(file: Int, tensor: SafetensorsTensor)]]

    deinit { owned.forEach { $0.deallocate() } }

    /// Loads `directory` (config.json + *.safetensors).
    public init(directory: String) throws(ModelError) {
        self.directory = directory
        let configPath = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath),
              let object = try? JSONSerialization.jsonObject(with: data), let config = object as? [String: Any] else {
            throw .file(path: configPath, detail: "missing or not a JSON object; --model must be a Hugging Face model directory")
        }
        do { shape = try ModelShape(config: config, path: configPath) } catch { throw .config(error) }
        var files: [SafetensorsFile] = []
        var entries: [String: (file: Int, tensor: SafetensorsTensor)] = [:]
        do {
            for path in try SafetensorsShards.files(in: directory) {
                let file = try SafetensorsFile(path: path)
                for tensor in file.tensors { entries[tensor.name] = (files.count, tensor) }
                files.append(file)
            }
        } catch {
            throw .file(path: directory, detail: "\(error)")
        }
        self.files = files
        layerTensors = Self.groupByLayer(entries.values.map { $0 }, layers: shape.layers)

        func locate(_ name: String) throws(ModelError) -> (SafetensorsFile, SafetensorsTensor) {
            guard let (index, tensor) = entries[name] else {
                throw .tensor(path: directory, tensor: name, detail: "missing; the checkpoint is incomplete or not a Llama-family model")
            }
            return (files[index], tensor)
        }
        var ownedBuffers: [UnsafeMutableRawPointer] = []
        /// A Float32 copy of a small float tensor (norms, biases).
        func vector(_ name: String, count: Int) throws(ModelError) -> UnsafePointer<Float> {
            let (file, tensor) = try locate(name)
            guard tensor.shape == [count] else {
                throw .tensor(path: file.path, tensor: name, detail: "shape \(tensor.shape), expected [\(count)]")
            }
            let encoding = try Self.encoding(of: tensor, in: file)
            let out = UnsafeMutablePointer<Float>.allocate(capacity: count)
            ownedBuffers.append(UnsafeMutableRawPointer(out))
            encoding.decode(out, file.data(of: tensor), count: count)
            return UnsafePointer(out)
        }
        /// A float matrix in place in the mapped file (copied only when misaligned).
        func floatMatrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> FrozenMatrix {
            let (file, tensor) = try locate(name)
            guard tensor.shape == [rows, cols] else {
                throw .tensor(path: file.path, tensor: name, detail: "shape \(tensor.shape), expected [\(rows), \(cols)]")
            }
            let encoding = try Self.encoding(of: tensor, in: file)
            var pointer = file.data(of: tensor)
            if Int(bitPattern: pointer) % encoding.byteWidth != 0 {
                let copy = UnsafeMutableRawPointer.allocate(byteCount: tensor.byteCount, alignment: 64)
                copy.copyMemory(from: pointer, byteCount: tensor.byteCount)
                ownedBuffers.append(copy)
                pointer = UnsafeRawPointer(copy)
            }
            return FrozenMatrix(rows: rows, cols: cols, storage: .float(pointer, encoding))
        }
        func linear(_ name: String, rows: Int, cols: Int) throws(ModelError) -> FrozenMatrix {
            let (file, tensor) = try locate(name)
            guard tensor.dtype == .U8 else { return try floatMatrix(name, rows: rows, cols: cols) }
            return try Self.nf4Matrix(name, rows: rows, cols: cols, file: file, packed: tensor, locate: locate)
        }

        let C = shape.hiddenSize, V = shape.vocabSize
        do throws(ModelError) {
            embedding = try floatMatrix("model.embed_tokens.weight", rows: V, cols: C)
            finalNorm = try vector("model.norm.weight", count: C)
            lmHead = shape.tiedEmbeddings ? embedding : try floatMatrix("lm_head.weight", rows: V, cols: C)
            var layers: [LayerWeights] = []
            var quantized: Set<Bool> = []
            for layer in 0..<shape.layers {
                let prefix = "model.layers.\(layer)."
                var projections: [Projection: FrozenMatrix] = [:]
                var biases: [Projection: UnsafePointer<Float>] = [:]
                for projection in Projection.allCases {
                    let (rows, cols) = projection.features(in: shape)
                    let matrix = try linear(prefix + projection.modulePath + ".weight", rows: rows, cols: cols)
                    quantized.insert(matrix.isNF4)
                    projections[projection] = matrix
                    let hasBias = [.q, .k, .v].contains(projection) ? shape.attentionBias : shape.mlpBias && projection != .o
                    if hasBias { biases[projection] = try vector(prefix + projection.modulePath + ".bias", count: rows) }
                }
                layers.append(LayerWeights(
                    attentionNorm: try vector(prefix + "input_layernorm.weight", count: C),
                    mlpNorm: try vector(prefix + "post_attention_layernorm.weight", count: C),
                    projections: projections, biases: biases))
            }
            guard quantized.count <= 1 else {
                throw ModelError.file(path: directory, detail: "some projections are NF4 and others are not; re-run quantize on the original checkpoint")
            }
            self.layers = layers
            isQuantized = quantized.first ?? false
            owned = ownedBuffers
        } catch {
            ownedBuffers.forEach { $0.deallocate() }
            throw error
        }
    }

    private static func encoding(of tensor: SafetensorsTensor, in file: SafetensorsFile) throws(ModelError) -> FloatEncoding {
        guard let encoding = tensor.dtype.floatEncoding else {
            throw .tensor(path: file.path, tensor: tensor.name, detail: "dtype \(tensor.dtype.rawValue); expected F32, F16 or BF16")
        }
        return encoding
    }

    /// A bitsandbytes 4-bit weight: the packed codes plus `.absmax`, `.quant_map`, `.nested_absmax`,
    /// `.nested_quant_map` and the `.quant_state.bitsandbytes__nf4` JSON (FORMATS.md).
    private static func nf4Matrix(
        _ name: String, rows: Int, cols: Int, file: SafetensorsFile, packed: SafetensorsTensor,
        locate: (String) throws(ModelError) -> (SafetensorsFile, SafetensorsTensor)
    ) throws(ModelError) -> FrozenMatrix {
        let count = rows * cols
        func fail(_ detail: String) -> ModelError { .tensor(path: file.path, tensor: name, detail: detail) }
        let (stateFile, stateTensor) = try locate(name + ".quant_state.bitsandbytes__nf4")
        let stateBytes = UnsafeRawBufferPointer(start: stateFile.data(of: stateTensor), count: stateTensor.byteCount)
        guard let object = try? JSONSerialization.jsonObject(with: Data(stateBytes)) as? [String: Any] else {
            throw fail("its quant_state is not JSON")
        }
        guard object["quant_type"] as? String == "nf4" else {
            throw fail("quant_type \(object["quant_type"] ?? "missing"); only nf4 is supported (fp4 is not)")
        }
        guard object["shape"] as? [Int] == [rows, cols] else { throw fail("quant_state shape \(object["shape"] ?? "missing"), expected [\(rows), \(cols)]") }
        guard let blockSize = object["blocksize"] as? Int, blockSize > 0, blockSize % 2 == 0, blockSize <= 4096 else {
            throw fail("quant_state blocksize \(object["blocksize"] ?? "missing") is not an even size up to 4096")
        }
        let blocks = (count + blockSize - 1) / blockSize
        guard packed.byteCount == (count + 1) / 2 else { throw fail("\(packed.byteCount) packed bytes, expected \((count + 1) / 2)") }
        let (mapFile, codeMap) = try locate(name + ".quant_map")
        let (absmaxFile, absmax) = try locate(name + ".absmax")
        guard codeMap.dtype == .F32, codeMap.elementCount == 16,
              (0..<16).allSatisfy({ mapFile.data(of: codeMap).loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) == NF4.code[$0] }) else {
            throw fail("quant_map is not bitsandbytes' NF4 code table")
        }
        let packedPointer = file.data(of: packed).assumingMemoryBound(to: UInt8.self)
        if object["nested_offset"] != nil {
            guard absmax.dtype == .U8, absmax.elementCount == blocks else { throw fail("absmax has \(absmax.dtype.rawValue) \(absmax.shape), expected U8 [\(blocks)]") }
            let (nestedFile, nested) = try locate(name + ".nested_absmax")
            let (nestedMapFile, nestedMap) = try locate(name + ".nested_quant_map")
            let groups = (blocks + DoubleQuantizedAbsmax.nestedBlockSize - 1) / DoubleQuantizedAbsmax.nestedBlockSize
            guard object["nested_blocksize"] as? Int == DoubleQuantizedAbsmax.nestedBlockSize else { throw fail("nested_blocksize is not 256") }
            guard nested.dtype == .F32, nested.elementCount == groups else { throw fail("nested_absmax has \(nested.dtype.rawValue) \(nested.shape), expected F32 [\(groups)]") }
            guard nestedMap.dtype == .F32, nestedMap.elementCount == 256 else { throw fail("nested_quant_map is not 256 F32 values") }
            let offset = (object["nested_offset"] as? Double).map(Float.init) ?? Float((object["nested_offset"] as? Int) ?? 0)
            for pointer in [nestedFile.data(of: nested), nestedMapFile.data(of: nestedMap)] where Int(bitPattern: pointer) % 4 != 0 {
                throw fail("Float32 data is not 4-byte aligned in the file; re-save the checkpoint")
            }
            return FrozenMatrix(rows: rows, cols: cols, storage: .nf4DoubleQuant(
                packed: packedPointer, scaleCodes: absmaxFile.data(of: absmax).assumingMemoryBound(to: UInt8.self),
                nestedScales: nestedFile.data(of: nested).assumingMemoryBound(to: Float.self), offset: offset,
                map: nestedMapFile.data(of: nestedMap).assumingMemoryBound(to: Float.self), blockSize: blockSize))
        }
        guard absmax.dtype == .F32, absmax.elementCount == blocks else { throw fail("absmax has \(absmax.dtype.rawValue) \(absmax.shape), expected F32 [\(blocks)]") }
        let scales = absmaxFile.data(of: absmax)
        guard Int(bitPattern: scales) % 4 == 0 else { throw fail("absmax is not 4-byte aligned in the file; re-save the checkpoint") }
        return FrozenMatrix(rows: rows, cols: cols, storage: .nf4(packed: packedPointer, scales: scales.assumingMemoryBound(to: Float.self), blockSize: blockSize))
    }
}
