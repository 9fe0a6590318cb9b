// Matrix products with a frozen weight that is decoded one tile at a time into a reused scratch
// buffer and fed to sgemm (ggml's "dequantize into a workspace, then BLAS"). No full Float32 copy
// of the weight ever exists; Float32 weights go to sgemm directly.
import QLoRAKernels

/// Grow-never scratch for decoded weight tiles, allocated once (64-byte aligned).
public final class TileScratch: @unchecked Sendable {
    public let capacity: Int
    let pointer: UnsafeMutablePointer<Float>

    /// - Parameter capacity: Float32 values a tile may hold (default 4 Mi values, 16 MiB: smaller
    ///   tiles cut the products into more sgemm calls, each re-reading its output; measured in
    ///   benchmarks/README.md).
    public init(capacity: Int = TileScratch.defaultCapacity) {
        precondition(capacity >= 64)
        self.capacity = capacity
        pointer = UnsafeMutableRawPointer.allocate(byteCount: 4 * capacity, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
    }

    deinit { pointer.deallocate() }

    public static let defaultCapacity = 1 << 22
}

/// How a weight of (rows, cols) is cut into tiles of at most `capacity` values.
public struct TileShape: Equatable, Sendable {
    public var rows: Int
    public var cols: Int

    public init(rows: Int, cols: Int) {
        precondition(rows > 0 && cols > 0)
        self.rows = rows
        self.cols = cols
    }

    /// For `X W^T`: strips of `stripWidth` columns (a multiple of 64, one NF4 block per row piece)
    /// and as many rows as fit. Whole-row tiles would make sgemm re-pack all of X for every tile.
    public static func forward(rows: Int, cols: Int, capacity: Int, stripWidth: Int = 1024) -> TileShape {
        let width = min(cols, stripWidth)
        return TileShape(rows: min(rows, max(1, capacity / width)), cols: width)
    }

    /// For `dY W`: whole rows (each tile one contiguous stretch of the weight), as many as fit.
    public static func backward(rows: Int, cols: Int, capacity: Int) -> TileShape {
        if cols <= capacity { return TileShape(rows: min(rows, capacity / cols), cols: cols) }
        return TileShape(rows: 1, cols: capacity / 64 * 64)
    }
}

/// `y = x W^T`, or `y += x W^T` when `accumulate`: x (m, W.cols), y (m, W.rows), row-major.
/// y must not alias x. Uses the scratch for decoded tiles; sgemm uses all cores.
public func frozenMatmulForward(
    _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: FrozenMatrix, rows m: Int,
    scratch: TileScratch, accumulate: Bool = false, tile: TileShape? = nil
) {
    let n = weight.rows, k = weight.cols
    if let w = weight.float32Values {
        BLAS.sgemm(y, x, w, m: m, n: n, k: k, transposeB: true, beta: accumulate ? 1 : 0)
        return
    }
    let tile = tile ?? TileShape.forward(rows: n, cols: k, capacity: scratch.capacity)
    for n0 in stride(from: 0, to: n, by: tile.rows) {
        let tileRows = min(tile.rows, n - n0)
        for k0 in stride(from: 0, to: k, by: tile.cols) {
            let tileCols = min(tile.cols, k - k0)
            decodeTileInParallel(weight, rows: n0..<n0 + tileRows, cols: k0..<k0 + tileCols, into: scratch.pointer)
            // y[:, n0 ..< n0+tileRows] (+)= x[:, k0 ..< k0+tileCols] · tile^T
            BLAS.sgemm(y + n0, x + k0, scratch.pointer, m: m, n: tileRows, k: tileCols, transposeB: true,
                       beta: accumulate || k0 > 0 ? 1 : 0, lda: k, ldb: tileCols, ldc: n)
        }
    }
}

/// `dx = dy W`, or `dx += dy W` when `accumulate`: dy (m, W.rows), dx (m, W.cols), row-major.
/// dx must not alias dy. The backward of `frozenMatmulForward` with respect to x.
public func frozenMatmulBackward(
    _ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ weight: FrozenMatrix, rows m: Int,
    scratch: TileScratch, accumulate: Bool = false, tile: TileShape? = nil
) {
    let n = weight.rows, k = weight.cols
    if let w = weight.float32Values {
        BLAS.sgemm(dx, dy, w, m: m, n: k, k: n, transposeB: false, beta: accumulate ? 1 : 0)
        return
    }
    let tile = tile ?? TileShape.backward(rows: n, cols: k, capacity: scratch.capacity)
    for k0 in stride(from: 0, to: k, by: tile.cols) {
        let tileCols = min(tile.cols, k - k0)
        for n0 in stride(from: 0, to: n, by: tile.rows) {
            let tileRows = min(tile.rows, n - n0)
            decodeTileInParallel(weight, rows: n0..<n0 + tileRows, cols: k0..<k0 + tileCols, into: scratch.pointer)
            // dx[:, k0 ..< k0+tileCols] (+)= dy[:, n0 ..< n0+tileRows] · tile
            BLAS.sgemm(dx + k0, dy + n0, scratch.pointer, m: m, n: tileCols, k: tileRows, transposeB: false,
                       beta: accumulate || n0 > 0 ? 1 : 0, lda: n, ldb: tileCols, ldc: k)
        }
    }
}

/// Decodes a tile with rows split across the cores.
func decodeTileInParallel(_ weight: FrozenMatrix, rows: Range<Int>, cols: Range<Int>, into out: UnsafeMutablePointer<Float>) {
    let destination = UnsafeSendable(out)
    let width = cols.count
    parallelChunks(count: rows.count, minimumChunk: max(1, 16384 / width)) { part in
        weight.decodeTile(rows: rows.lowerBound + part.lowerBound ..< rows.lowerBound + part.upperBound, cols: cols,
                          into: destination.raw + part.lowerBound * width)
    }
}
