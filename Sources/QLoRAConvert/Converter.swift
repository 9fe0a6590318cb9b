// Streams a WeightSource into a Hugging Face 4-bit checkpoint directory in the layout transformers
// + bitsandbytes write: decoder linears in NF4 with double-quantized constants, everything else in
// 16-bit. Memory stays at a few tensors' worth: values are read in row chunks, and only one tensor's
// packed codes are held at a time. The output appears under its final name only when complete.
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAQuant

/// How to convert.
public struct ConvertOptions: Sendable {
    public var output: String
    /// Replace an existing output directory (only once the new one is complete).
    public var force = false
    /// Shards are cut at this many bytes (transformers 5's default `max_shard_size`, 50 GB).
    public var maxShardBytes = 50_000_000_000
    /// Values per read chunk; bounds the working memory (two Float32 buffers of this size).
    public var chunkElements = 1 << 20
    /// torch's thread count to emulate for the double-quant offset (FORMAT.md).
    public var torchThreads = TorchFloat32Sum.defaultThreads

    public init(output: String) { self.output = output }
}

/// What a conversion did, for the closing summary.
public struct ConversionSummary: Sendable {
    public struct ErrorStats: Sendable {
        public var tensors = 0
        public var elements = 0
        public var absErrorSum = 0.0
        public var maxAbsError: Float = 0
        public var meanAbsError: Double { elements == 0 ? 0 : absErrorSum / Double(elements) }
    }
    public var quantizedTensors = 0
    public var keptTensors = 0
    public var parameters = 0
    public var quantizedParameters = 0
    public var bytesIn = 0
    public var bytesOut = 0
    public var quantizedBytesOut = 0
    public var shards = 0
    /// Per projection kind (q_proj, ..., down_proj): |w - dequantize(quantize(w))| over every element.
    public var errors: [String: ErrorStats] = [:]
    public var seconds = 0.0
    public var outputEncoding = FloatEncoding.bfloat16

    /// Bits per quantized parameter, all NF4 tensors included (codes, absmax, maps, JSON).
    public var quantizedBitsPerParameter: Double { Double(quantizedBytesOut * 8) / Double(max(1, quantizedParameters)) }
    public var bitsPerParameter: Double { Double(bytesOut * 8) / Double(max(1, parameters)) }
}

/// Progress of a conversion, reported after every chunk.
public struct ConvertProgress: Sendable {
    public var tensor: String
    public var tensorIndex: Int
    public var tensorCount: Int
    public var elementsDone: Int
    public var elementsTotal: Int
}

public enum Converter {
    /// The hidden directory a conversion writes into before renaming it to `output`.
    public static func partialDirectory(for output: String) -> String { AtomicOutput.partialDirectory(for: output) }

    public static func convert(
        _ source: WeightSource, options: ConvertOptions, progress: (ConvertProgress) -> Void = { _ in }
    ) throws -> ConversionSummary {
        let start = DispatchTime.now()
        try refuseOverlap(output: options.output, inputs: source.inputPaths)
        let output = URL(fileURLWithPath: options.output).standardizedFileURL.path
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: output) && !options.force {
            throw FileError.alreadyExists(path: output)
        }
        let partial = partialDirectory(for: output)
        let parent = URL(fileURLWithPath: output).deletingLastPathComponent().path
        do {
            try fileManager.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw ConvertError.output(path: parent, detail: "cannot create the output's parent directory (\((error as NSError).localizedDescription)); choose another --output")
        }
        AtomicOutput.removeStalePartials(of: output)
        guard mkdir(partial, 0o755) == 0 else { throw FileError.cannotCreateDirectory(path: partial, errno: errno) }
        var completed = false
        defer { if !completed { try? fileManager.removeItem(atPath: partial) } }

        var summary = ConversionSummary()
        summary.outputEncoding = source.outputEncoding
        let plan = ShardPlan(tensors: source.tensors, encoding: source.outputEncoding, maxShardBytes: options.maxShardBytes)
        let totalElements = source.tensors.reduce(0) { $0 + 2 * $1.elementCount }
        var done = 0
        var tensorIndex = 0
        let buffers = ChunkBuffers(elements: options.chunkElements)
        for (shardIndex, shard) in plan.shards.enumerated() {
            let writer = try SafetensorsWriter(
                path: partial + "/" + plan.fileName(shardIndex), planned: shard.flatMap(\.planned),
                lateTensors: shard.filter(\.quantized).count, longestLateName: (shard.map(\.source.name.utf8.count).max() ?? 0) + 48)
            for item in shard {
                let tensor = item.source
                let report = { (elements: Int) in
                    progress(ConvertProgress(tensor: tensor.name, tensorIndex: tensorIndex, tensorCount: source.tensors.count,
                                             elementsDone: done + elements, elementsTotal: totalElements))
                }
                if item.quantized {
                    let stats = try quantizeTensor(tensor, from: source, writer: writer, encoding: source.outputEncoding,
                                                   options: options, buffers: buffers, report: report)
                    summary.errors[projectionKind(tensor.name), default: .init()].merge(stats)
                    summary.quantizedTensors += 1
                    summary.quantizedParameters += tensor.elementCount
                    summary.quantizedBytesOut += item.bytes
                } else {
                    try copyTensor(tensor, from: source, writer: writer, encoding: source.outputEncoding, buffers: buffers, report: report)
                    summary.keptTensors += 1
                }
                source.release(tensor)
                done += 2 * tensor.elementCount
                summary.parameters += tensor.elementCount
                summary.bytesIn += tensor.sourceBytes
                tensorIndex += 1
            }
            try writer.finish()
        }
        summary.shards = plan.shards.count
        if plan.shards.count > 1 { try AtomicOutput.writeFile(partial + "/model.safetensors.index.json", plan.indexJSON()) }
        try AtomicOutput.writeFile(partial + "/config.json", outputConfig(source.config, encoding: source.outputEncoding))
        for (name, bytes) in try source.auxiliaryFiles() { try AtomicOutput.writeFile(partial + "/" + name, bytes) }
        summary.bytesOut = directorySize(partial)
        try AtomicOutput.publish(partial: partial, output: output, replace: options.force)
        completed = true
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        return summary
    }

    /// Quantizes one linear weight in row chunks, writes its six tensors, then measures the error
    /// of the stored form against the source in a second pass.
    static func quantizeTensor(
        _ tensor: SourceTensor, from source: WeightSource, writer: SafetensorsWriter, encoding: FloatEncoding,
        options: ConvertOptions, buffers: ChunkBuffers, report: (Int) -> Void
    ) throws -> ConversionSummary.ErrorStats {
        let rowsPerChunk = chunkRows(tensor, target: options.chunkElements)
        var quantizer = NF4TensorQuantizer(shape: tensor.shape)
        try forEachChunk(of: tensor, rowsPerChunk: rowsPerChunk) { rows in
            try source.read(tensor, rows: rows, into: buffers.values)
            guard quantizer.quantize(buffers.values, count: rows.count * tensor.rowLength) else {
                throw ConvertError.nonFinite(path: tensor.file, tensor: tensor.name)
            }
            report(rows.upperBound * tensor.rowLength)
        }
        let state = quantizer.finish(dtype: encoding, threads: options.torchThreads)
        let name = tensor.name
        try quantizer.packed.withUnsafeBytes { try writer.write(name, bytes: $0.baseAddress!, count: $0.count) }
        try state.absmax.codes.withUnsafeBytes { try writer.write(name + ".absmax", bytes: $0.baseAddress!, count: $0.count) }
        try NF4.code.withUnsafeBytes { try writer.write(name + ".quant_map", bytes: $0.baseAddress!, count: $0.count) }
        try state.absmax.nestedAbsmax.withUnsafeBytes { try writer.write(name + ".nested_absmax", bytes: $0.baseAddress!, count: $0.count) }
        try DynamicMap.signed.withUnsafeBytes { try writer.write(name + ".nested_quant_map", bytes: $0.baseAddress!, count: $0.count) }
        let json = state.quantStateJSON
        try writer.appendLate(name + ".quant_state.bitsandbytes__nf4", dtype: .U8, shape: [json.count], bytes: json)

        // Second pass: what a loader will see (dequantized, rounded to the dtype) against the source.
        var stats = ConversionSummary.ErrorStats()
        stats.tensors = 1
        let scales = state.blockScales()
        try forEachChunk(of: tensor, rowsPerChunk: rowsPerChunk) { rows in
            let first = rows.lowerBound * tensor.rowLength, count = rows.count * tensor.rowLength
            try source.read(tensor, rows: rows, into: buffers.values)
            quantizer.packed.withUnsafeBufferPointer { packed in
                scales.withUnsafeBufferPointer { scale in
                    nf4Dequantize(buffers.restored, packed.baseAddress! + first / 2, scale.baseAddress! + first / NF4.defaultBlockSize,
                                  count: count, blockSize: NF4.defaultBlockSize)
                }
            }
            encoding.round(buffers.restored, count: count)
            accumulateAbsoluteError(buffers.values, buffers.restored, count: count, sum: &stats.absErrorSum, maximum: &stats.maxAbsError)
            stats.elements += count
            report(tensor.elementCount + rows.upperBound * tensor.rowLength)
        }
        return stats
    }

    /// Copies a tensor that stays unquantized, re-encoded to the output dtype.
    static func copyTensor(
        _ tensor: SourceTensor, from source: WeightSource, writer: SafetensorsWriter, encoding: FloatEncoding,
        buffers: ChunkBuffers, report: (Int) -> Void
    ) throws {
        let rowsPerChunk = chunkRows(tensor, target: buffers.elements)
        let encoded = UnsafeMutableRawPointer(buffers.restored)  // Float32 buffer reused as byte scratch
        try forEachChunk(of: tensor, rowsPerChunk: rowsPerChunk) { rows in
            let count = rows.count * tensor.rowLength
            try source.read(tensor, rows: rows, into: buffers.values)
            for i in 0..<count where !buffers.values[i].isFinite { throw ConvertError.nonFinite(path: tensor.file, tensor: tensor.name) }
            encoding.encode(encoded, buffers.values, count: count)
            try writer.write(tensor.name, at: rows.lowerBound * tensor.rowLength * encoding.byteWidth, bytes: encoded,
                             count: count * encoding.byteWidth)
            report(2 * rows.upperBound * tensor.rowLength)
        }
    }

    /// Calls `body` with consecutive row ranges of `rowsPerChunk` rows covering the tensor.
    static func forEachChunk(of tensor: SourceTensor, rowsPerChunk: Int, _ body: (Range<Int>) throws -> Void) rethrows {
        for start in stride(from: 0, to: tensor.rowCount, by: rowsPerChunk) {
            try body(start..<min(tensor.rowCount, start + rowsPerChunk))
        }
    }

    /// Rows per chunk: about `target` values, and a whole number of 64-blocks so that chunks of a
    /// tensor whose rows straddle blocks still start on a block boundary.
    static func chunkRows(_ tensor: SourceTensor, target: Int) -> Int {
        let unit = NF4.defaultBlockSize / gcd(tensor.rowLength, NF4.defaultBlockSize)
        return max(unit, target / tensor.rowLength / unit * unit)
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// "q_proj", "down_proj", ... for the error summary.
    static func projectionKind(_ name: String) -> String {
        let parts = name.split(separator: ".")
        return parts.count >= 2 ? String(parts[parts.count - 2]) : name
    }

    /// The source config with the dtype and a complete bitsandbytes `quantization_config`.
    static func outputConfig(_ config: [String: Any], encoding: FloatEncoding) -> [UInt8] {
        var config = config
        // transformers 5 reads "dtype", earlier versions "torch_dtype".
        config["dtype"] = encoding.rawValue
        config["torch_dtype"] = encoding.rawValue
        config["quantization_config"] = [
            "quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": false,
            "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true,
            "bnb_4bit_compute_dtype": encoding.rawValue, "bnb_4bit_quant_storage": "uint8",
            "llm_int8_threshold": 6.0, "llm_int8_skip_modules": NSNull(), "llm_int8_enable_fp32_cpu_offload": false,
            "llm_int8_has_fp16_weight": false, "_load_in_4bit": true, "_load_in_8bit": false,
        ] as [String: Any]
        return Array((PythonJSON.encode(config) + "\n").utf8)
    }

    static func directorySize(_ path: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.reduce(0) { total, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name)
            return total + ((attributes?[.size] as? Int) ?? 0)
        }
    }
}

extension ConversionSummary.ErrorStats {
    mutating func merge(_ other: Self) {
        tensors += other.tensors
        elements += other.elements
        absErrorSum += other.absErrorSum
        maxAbsError = max(maxAbsError, other.maxAbsError)
    }
}

/// Two reusable Float32 buffers for row chunks: source values and their restored form.
final class ChunkBuffers {
    let elements: Int
    let values: UnsafeMutablePointer<Float>
    let restored: UnsafeMutablePointer<Float>
    init(elements: Int) {
        self.elements = elements
        values = .allocate(capacity: elements)
        restored = .allocate(capacity: elements)
    }
    deinit {
        values.deallocate()
        restored.deallocate()
    }
}
