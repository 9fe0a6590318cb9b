// A frozen weight matrix in the format it is stored in (NF4 with its block scales, 16-bit or 32-bit
// floats), decoded to Float32 one tile at a time and never as a whole. The bytes are borrowed:
// whoever creates a FrozenMatrix keeps them alive (a mapped checkpoint or an owned buffer).
import QLoRAKernels
import QLoRAQuant

/// A (rows, cols) row-major weight, e.g. a linear layer's (out features, in features).
public struct FrozenMatrix: @unchecked Sendable {
    public enum Storage {
        /// bitsandbytes NF4 (FORMAT.md): `rows * cols` codes over the flattened tensor, blocks of
        /// `blockSize`; block scales `map[scaleCodes[b]] * nestedScales[b / 256] + offset`.
        case nf4DoubleQuant(packed: UnsafePointer<UInt8>, scaleCodes: UnsafePointer<UInt8>,
                            nestedScales: UnsafePointer<Float>, offset: Float, map: UnsafePointer<Float>, blockSize: Int)
        /// NF4 with one plain Float32 absmax per block (`bnb_4bit_use_double_quant=False`).
        case nf4(packed: UnsafePointer<UInt8>, scales: UnsafePointer<Float>, blockSize: Int)
        /// 16- or 32-bit floats, little-endian, 2-byte aligned (4-byte for float32).
        case float(UnsafeRawPointer, FloatEncoding)
    }

    public let rows: Int
    public let cols: Int
    public let storage: Storage

    public init(rows: Int, cols: Int, storage: Storage) {
        precondition(rows > 0 && cols > 0)
        if case .float(let pointer, let encoding) = storage {
            precondition(Int(bitPattern: pointer) % (encoding == .float32 ? 4 : 2) == 0, "misaligned weight")
        }
        self.rows = rows
        self.cols = cols
        self.storage = storage
    }

    /// The Float32 values themselves when stored as Float32 (no decoding needed), else nil.
    public var float32Values: UnsafePointer<Float>? {
        if case .float(let pointer, .float32) = storage { return pointer.assumingMemoryBound(to: Float.self) }
        return nil
    }

    public var isNF4: Bool {
        if case .float = storage { return false }
        return true
    }

    /// Bytes held for this matrix (codes, scales and their scales).
    public var storedBytes: Int {
        let count = rows * cols
        switch storage {
        case .nf4DoubleQuant(_, _, _, _, _, let blockSize):
            let blocks = (count + blockSize - 1) / blockSize
            return (count + 1) / 2 + blocks + 4 * ((blocks + 255) / 256)
        case .nf4(_, _, let blockSize): return (count + 1) / 2 + 4 * ((count + blockSize - 1) / blockSize)
        case .float(_, let encoding): return count * encoding.byteWidth
        }
    }

    /// Decodes the tile `W[rowRange, colRange]` into `out` (rowRange.count, colRange.count),
    /// row-major, on the calling thread. Overwrites `out`. Values are exactly bnb's dequantization
    /// (NF4) or the stored floats widened.
    public func decodeTile(rows rowRange: Range<Int>, cols colRange: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(rowRange.lowerBound >= 0 && rowRange.upperBound <= rows && colRange.lowerBound >= 0 && colRange.upperBound <= cols)
        let width = colRange.count
        switch storage {
        case .nf4DoubleQuant(let packed, let scaleCodes, let nestedScales, let offset, let map, let blockSize):
            let scales = NF4BlockScales.doubleQuantized(codes: scaleCodes, nested: nestedScales, offset: offset, map: map,
                                                        nestedBlockSize: DoubleQuantizedAbsmax.nestedBlockSize)
            nf4DecodeTile(out, packed: packed, scales: scales, width: cols, rows: rowRange, cols: colRange, blockSize: blockSize)
        case .nf4(let packed, let scales, let blockSize):
            nf4DecodeTile(out, packed: packed, scales: .plain(scales), width: cols, rows: rowRange, cols: colRange, blockSize: blockSize)
        case .float(let pointer, let encoding):
            for (i, row) in rowRange.enumerated() {
                encoding.decode(out + i * width, pointer + (row * cols + colRange.lowerBound) * encoding.byteWidth, count: width)
            }
        }
    }

    /// Decodes rows `rowRange` in full into `out` (rowRange.count, cols). Overwrites `out`.
    public func decodeRows(_ rowRange: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        decodeTile(rows: rowRange, cols: 0..<cols, into: out)
    }
}
