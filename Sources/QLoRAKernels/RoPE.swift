// Rotary position embedding forward and backward in place, Hugging Face rotate_half layout (the
// two halves of each head are rotated against each other, not interleaved pairs). Building the
// cos/sin tables (rope_theta, llama3 scaling) is the model's job.
import CQLoRAKernels

/// RoPE forward in place: for row `r`, head `h`, `i < headDim / 2`, with `p = positions[r]`,
/// `c = cos[p * headDim/2 + i]`, `s = sin[p * headDim/2 + i]`, `x1 = x[r,h,i]`, `x2 = x[r,h,i + headDim/2]`:
/// `x1' = x1 * c - x2 * s`, `x2' = x2 * c + x1 * s` (transformers `apply_rotary_pos_emb`,
/// `q * cos + rotate_half(q) * sin`).
/// - Parameters:
///   - x: `(rows, heads, headDim)`, overwritten in place.
///   - positions: `(rows)`, each in `0..<maxPositions`.
///   - cos, sin: `(maxPositions, headDim / 2)`.
/// - Precondition: `headDim` is even and positive, positions are in range.
public func ropeForward(
    _ x: UnsafeMutablePointer<Float>, _ positions: UnsafePointer<Int32>, _ cos: UnsafePointer<Float>,
    _ sin: UnsafePointer<Float>, rows: Int, heads: Int, headDim: Int, maxPositions: Int
) {
    rope(x, positions, cos, sin, rows: rows, heads: heads, headDim: headDim, maxPositions: maxPositions, sinSign: 1)
}

/// RoPE backward in place (the transposed rotation), from the forward's `x1' = x1 c - x2 s`,
/// `x2' = x2 c + x1 s`: `g1 <- g1 * c + g2 * s`, `g2 <- g2 * c - g1 * s`. Same layouts and
/// preconditions as `ropeForward`; `dx` holds the gradient of the output and is overwritten with
/// the gradient of the input.
public func ropeBackward(
    _ dx: UnsafeMutablePointer<Float>, _ positions: UnsafePointer<Int32>, _ cos: UnsafePointer<Float>,
    _ sin: UnsafePointer<Float>, rows: Int, heads: Int, headDim: Int, maxPositions: Int
) {
    rope(dx, positions, cos, sin, rows: rows, heads: heads, headDim: headDim, maxPositions: maxPositions, sinSign: -1)
}

/// Both directions: the backward is the forward with `sin` negated (exactly, so the same bits).
private func rope(
    _ x: UnsafeMutablePointer<Float>, _ positions: UnsafePointer<Int32>, _ cos: UnsafePointer<Float>,
    _ sin: UnsafePointer<Float>, rows: Int, heads: Int, headDim: Int, maxPositions: Int, sinSign: Float
) {
    precondition(rows >= 0 && heads > 0 && headDim > 0 && headDim % 2 == 0 && maxPositions > 0)
    for r in 0..<rows {
        precondition(positions[r] >= 0 && Int(positions[r]) < maxPositions,
                     "position \(positions[r]) of row \(r) is not in 0..<\(maxPositions)")
    }
    let x = UnsafeSendable(x), positions = UnsafeSendable(positions)
    let cos = UnsafeSendable(cos), sin = UnsafeSendable(sin)
    let width = heads * headDim
    parallelChunks(count: rows, minimumChunk: rowsPerChunk(width)) { range in
        let first = range.lowerBound
        qlora_rope(x.raw + first * width, positions.raw + first, cos.raw, sin.raw, range.count, heads, headDim, sinSign)
    }
}

extension Reference {
    /// Double twin of `ropeForward`.
    public static func ropeForward(
        _ x: UnsafeMutablePointer<Double>, _ positions: UnsafePointer<Int32>, _ cos: UnsafePointer<Double>,
        _ sin: UnsafePointer<Double>, rows: Int, heads: Int, headDim: Int, maxPositions: Int
    ) {
        let half = headDim / 2
        for r in 0..<rows {
            let p = Int(positions[r])
            for h in 0..<heads {
                let row = x + (r * heads + h) * headDim
                for i in 0..<half {
                    let c = cos[p * half + i], s = sin[p * half + i]
                    let x1 = row[i], x2 = row[i + half]
                    row[i] = x1 * c - x2 * s
                    row[i + half] = x2 * c + x1 * s
                }
            }
        }
    }

    /// Double twin of `ropeBackward`.
    public static func ropeBackward(
        _ dx: UnsafeMutablePointer<Double>, _ positions: UnsafePointer<Int32>, _ cos: UnsafePointer<Double>,
        _ sin: UnsafePointer<Double>, rows: Int, heads: Int, headDim: Int, maxPositions: Int
    ) {
        let half = headDim / 2
        for r in 0..<rows {
            let p = Int(positions[r])
            for h in 0..<heads {
                let row = dx + (r * heads + h) * headDim
                for i in 0..<half {
                    let c = cos[p * half + i], s = sin[p * half + i]
                    let g1 = row[i], g2 = row[i + half]
                    row[i] = g1 * c + g2 * s
                    row[i + half] = g2 * c - g1 * s
                }
            }
        }
    }
}
