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
    let shape = tile ?? TileShape.forward(rows: n, cols: k, capacity: scratch.capacity)
    forEachDecodedTile(of: weight, shape: shape, rowsOuter: true, into: scratch) { rows, cols in
        // y[:, rows] (+)= x[:, cols] · tile^T, summing over the column strips
        BLAS.sgemm(y + rows.lowerBound, x + cols.lowerBound, scratch.pointer, m: m, n: rows.count, k: cols.count,
                   transposeB: true, beta: accumulate || cols.lowerBound > 0 ? 1 : 0, lda: k, ldb: cols.count, ldc: n)
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
    let shape = tile ?? TileShape.backward(rows: n, cols: k, capacity: scratch.capacity)
    forEachDecodedTile(of: weight, shape: shape, rowsOuter: false, into: scratch) { rows, cols in
        // dx[:, cols] (+)= dy[:, rows] · tile, summing over the row blocks
        BLAS.sgemm(dx + cols.lowerBound, dy + rows.lowerBound, scratch.pointer, m: m, n: cols.count, k: rows.count,
                   transposeB: false, beta: accumulate || rows.lowerBound > 0 ? 1 : 0, lda: n, ldb: cols.count, ldc: k)
    }
}

/// Decodes every tile of `weight` into the scratch in turn and calls `body(rows, cols)` on it; with
/// `rowsOuter` the column tiles of one row block come consecutively, else the row tiles of one
/// column strip (so each output block's partial sums are added while it is hot).
func forEachDecodedTile(
    of weight: FrozenMatrix, shape: TileShape, rowsOuter: Bool, into scratch: TileScratch,
    _ body: (Range<Int>, Range<Int>) -> Void
) {
    precondition(shape.rows * shape.cols <= scratch.capacity, "a \(shape.rows)x\(shape.cols) tile does not fit the scratch")
    let (outerEnd, outerStep) = rowsOuter ? (weight.rows, shape.rows) : (weight.cols, shape.cols)
    let (innerEnd, innerStep) = rowsOuter ? (weight.cols, shape.cols) : (weight.rows, shape.rows)
    for outer in stride(from: 0, to: outerEnd, by: outerStep) {
        for inner in stride(from: 0, to: innerEnd, by: innerStep) {
            let r0 = rowsOuter ? outer : inner, c0 = rowsOuter ? inner : outer
            let rows = r0..<min(r0 + shape.rows, weight.rows), cols = c0..<min(c0 + shape.cols, weight.cols)
            decodeTileInParallel(weight, rows: rows, cols: cols, into: scratch.pointer)
            body(rows, cols)
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
