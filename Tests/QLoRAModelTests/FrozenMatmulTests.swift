// The tiled matmuls with a frozen weight against sgemm on the fully decoded weight, for every
// storage format and for tiles that cut rows, straddle NF4 blocks and leave ragged edges.
import QLoRAKernels
import QLoRAModel
import QLoRAQuant
import Testing
import _TestSupport

/// Tiles only change the order of fp32 sums: a few ulps of the products' magnitude.
let tiledRelativeTolerance = 1e-5, tiledAbsoluteTolerance = 1e-5

enum StorageKind: String, CaseIterable { case nf4DoubleQuant, nf4, float16, bfloat16 }

struct TiledCase: CustomStringConvertible, Sendable {
    let kind: StorageKind
    let tile: TileShape?
    var description: String { "\(kind) tile \(tile.map { "\($0.rows)x\($0.cols)" } ?? "default")" }
}

let tiledCases = StorageKind.allCases.flatMap { kind in
    [TiledCase(kind: kind, tile: nil), TiledCase(kind: kind, tile: TileShape(rows: 5, cols: 64)),
     TiledCase(kind: kind, tile: TileShape(rows: 37, cols: 100))]
}

@Test(arguments: tiledCases)
func tiledMatmulsEqualSgemmOnTheDecodedWeight(_ c: TiledCase) {
    let (rows, cols, m) = (37, 176, 9)  // 176 % 64 != 0: NF4 blocks straddle rows
    let count = rows * cols
    var weights = [Float](repeating: 0, count: count)
    fillNormal(&weights, count: count, seed: 11, std: 0.05)
    var quantizer = NF4TensorQuantizer(shape: [rows, cols])
    _ = weights.withUnsafeBufferPointer { quantizer.quantize($0.baseAddress!, count: count) }
    let state = quantizer.finish(dtype: .float32)
    let scales = state.blockScales()
    var halves = [UInt16](repeating: 0, count: count)
    var dense = [Float](repeating: 0, count: count)
    let encoding: FloatEncoding = c.kind == .bfloat16 ? .bfloat16 : .float16
    encoding.encode(&halves, weights, count: count)
    switch c.kind {
    case .nf4DoubleQuant, .nf4: state.dequantize(quantizer.packed, into: &dense)
    case .float16, .bfloat16: encoding.decode(&dense, halves, count: count)
    }
    var x = [Float](repeating: 0, count: m * cols), dy = [Float](repeating: 0, count: m * rows)
    fillNormal(&x, count: x.count, seed: 12, std: 1)
    fillNormal(&dy, count: dy.count, seed: 13, std: 1)
    var expectedY = [Float](repeating: 0, count: m * rows), expectedDx = [Float](repeating: 0, count: m * cols)
    BLAS.sgemm(&expectedY, x, dense, m: m, n: rows, k: cols, transposeB: true)
    BLAS.sgemm(&expectedDx, dy, dense, m: m, n: cols, k: rows, transposeB: false)

    quantizer.packed.withUnsafeBufferPointer { packed in
    state.absmax.codes.withUnsafeBufferPointer { codes in
    state.absmax.nestedAbsmax.withUnsafeBufferPointer { nested in
    scales.withUnsafeBufferPointer { plainScales in
    halves.withUnsafeBufferPointer { halfBits in
        let storage: FrozenMatrix.Storage
        switch c.kind {
        case .nf4DoubleQuant:
            storage = .nf4DoubleQuant(packed: packed.baseAddress!, scaleCodes: codes.baseAddress!, nestedScales: nested.baseAddress!,
                                      offset: state.absmax.offset, map: DynamicMap.signedPointer, blockSize: 64)
        case .nf4: storage = .nf4(packed: packed.baseAddress!, scales: plainScales.baseAddress!, blockSize: 64)
        case .float16, .bfloat16: storage = .float(UnsafeRawPointer(halfBits.baseAddress!), encoding)
        }
        let matrix = FrozenMatrix(rows: rows, cols: cols, storage: storage)
        let scratch = TileScratch(capacity: 64 * 64)
        var y = [Float](repeating: .nan, count: m * rows), dx = [Float](repeating: .nan, count: m * cols)
        frozenMatmulForward(&y, x, matrix, rows: m, scratch: scratch, tile: c.tile)
        frozenMatmulBackward(&dx, dy, matrix, rows: m, scratch: scratch, tile: c.tile)
        let yCheck = compare(y, expectedY, rtol: tiledRelativeTolerance, atol: tiledAbsoluteTolerance)
        let dxCheck = compare(dx, expectedDx, rtol: tiledRelativeTolerance, atol: tiledAbsoluteTolerance)
        #expect(yCheck.passed, "\(c) forward: \(yCheck)")
        #expect(dxCheck.passed, "\(c) backward: \(dxCheck)")
        // accumulate: adds the same product again
        frozenMatmulForward(&y, x, matrix, rows: m, scratch: scratch, accumulate: true, tile: c.tile)
        let twice = compare(y, expectedY.map { 2 * $0 }, rtol: tiledRelativeTolerance, atol: 2 * tiledAbsoluteTolerance)
        #expect(twice.passed, "\(c) accumulating forward: \(twice)")
    }}}}}
}
