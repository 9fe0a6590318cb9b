// One weight tensor in bitsandbytes' NF4 + double-quant form: streaming quantization in chunks,
// the quant_state JSON transformers stores beside it, and dequantization. Layout: FORMAT.md.
import QLoRAIO
import QLoRAKernels

/// Quantizes one tensor, fed in flattened row-major order in chunks, into NF4 with double-quantized
/// block constants. Holds only the packed codes (n/2 bytes) and one Float per 64 values.
public struct NF4TensorQuantizer {
    public let shape: [Int]
    public let elementCount: Int
    public let blockSize: Int
    /// (elementCount + 1) / 2 bytes: two codes per byte, element 2i in the high nibble.
    public private(set) var packed: [UInt8]
    /// First-level absmax, one per block, before double quantization.
    public private(set) var absmax: [Float]
    public private(set) var quantizedCount = 0

    public init(shape: [Int], blockSize: Int = NF4.defaultBlockSize) {
        precondition(shape.allSatisfy { $0 > 0 } && !shape.isEmpty)
        self.shape = shape
        self.blockSize = blockSize
        elementCount = shape.reduce(1, *)
        packed = [UInt8](repeating: 0, count: (elementCount + 1) / 2)
        absmax = [Float](repeating: 0, count: (elementCount + blockSize - 1) / blockSize)
    }

    /// Quantizes the next `count` values, in parallel over blocks.
    /// - Returns: false when the chunk holds a NaN or an infinity.
    /// - Precondition: `count` is a multiple of the block size, except for the chunk that ends the tensor.
    public mutating func quantize(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        precondition(quantizedCount + count <= elementCount)
        precondition(count % blockSize == 0 || quantizedCount + count == elementCount)
        let start = quantizedCount
        let blockSize = self.blockSize
        let allFinite = UnsafeSendable(UnsafeMutablePointer<Bool>.allocate(capacity: 1))
        allFinite.raw.pointee = true
        defer { allFinite.raw.deallocate() }
        packed.withUnsafeMutableBufferPointer { packedBuffer in
            absmax.withUnsafeMutableBufferPointer { absmaxBuffer in
                let out = UnsafeSendable(packedBuffer.baseAddress! + start / 2)
                let scales = UnsafeSendable(absmaxBuffer.baseAddress! + start / blockSize)
                let input = UnsafeSendable(values)
                parallelChunks(count: count, granularity: blockSize, minimumChunk: 16384) { range in
                    let finite = nf4Quantize(out.raw + range.lowerBound / 2, scales.raw + range.lowerBound / blockSize,
                                             input.raw + range.lowerBound, count: range.count, blockSize: blockSize)
                    if !finite { allFinite.raw.pointee = false }
                }
            }
        }
        quantizedCount += count
        return allFinite.raw.pointee
    }

    /// Double-quantizes the block constants once every value has been fed.
    public func finish(dtype: FloatEncoding, threads: Int = TorchFloat32Sum.defaultThreads) -> NF4QuantState {
        precondition(quantizedCount == elementCount, "quantized \(quantizedCount) of \(elementCount) values")
        let doubleQuant = absmax.withUnsafeBufferPointer {
            DoubleQuantizedAbsmax(absmax: $0.baseAddress!, count: $0.count, threads: threads)
        }
        return NF4QuantState(shape: shape, blockSize: blockSize, dtype: dtype, absmax: doubleQuant)
    }
}

/// Everything besides the packed codes that describes an NF4 tensor (bnb `QuantState`).
public struct NF4QuantState: Sendable, Equatable {
    public var shape: [Int]
    public var blockSize: Int
    /// The tensor's dtype before quantization; dequantization returns to it.
    public var dtype: FloatEncoding
    public var absmax: DoubleQuantizedAbsmax

    public init(shape: [Int], blockSize: Int, dtype: FloatEncoding, absmax: DoubleQuantizedAbsmax) {
        self.shape = shape
        self.blockSize = blockSize
        self.dtype = dtype
        self.absmax = absmax
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The UTF-8 JSON transformers stores as `<name>.quant_state.bitsandbytes__nf4`: Python's
    /// `json.dumps` of bnb `QuantState.as_dict(packed=True)`'s non-tensor fields, in that key order.
    public var quantStateJSON: [UInt8] {
        let shapeText = shape.map(String.init).joined(separator: ", ")
        let text = "{\"quant_type\": \"nf4\", \"blocksize\": \(blockSize), \"dtype\": \"\(dtype.rawValue)\", "
            + "\"shape\": [\(shapeText)], \"nested_blocksize\": \(DoubleQuantizedAbsmax.nestedBlockSize), "
            + "\"nested_dtype\": \"float32\", \"nested_offset\": \(PythonJSON.float(Double(absmax.offset)))}"
        return Array(text.utf8)
    }

    /// Dequantizes the whole tensor to Float32 (not rounded to `dtype`), in parallel over blocks:
    /// decodes the block scales, then `code[nibble] * scale`. Overwrites `out` (elementCount floats).
    public func dequantize(_ packed: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>) {
        let scales = blockScales()
        let blockSize = self.blockSize
        let source = UnsafeSendable(packed), destination = UnsafeSendable(out)
        scales.withUnsafeBufferPointer { scaleBuffer in
            let scale = UnsafeSendable(scaleBuffer.baseAddress!)
            parallelChunks(count: elementCount, granularity: blockSize, minimumChunk: 1 << 16) { range in
                nf4Dequantize(destination.raw + range.lowerBound, source.raw + range.lowerBound / 2,
                              scale.raw + range.lowerBound / blockSize, count: range.count, blockSize: blockSize)
            }
        }
    }

    /// The dequantized first-level absmax, one Float per block.
    public func blockScales(map: [Float] = DynamicMap.signed) -> [Float] {
        [Float](unsafeUninitializedCapacity: absmax.codes.count) { buffer, count in
            absmax.dequantize(into: buffer.baseAddress!, map: map)
            count = absmax.codes.count
        }
    }
}
