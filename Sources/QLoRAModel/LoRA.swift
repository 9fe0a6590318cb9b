// LoRA (Hu et al. 2021) as PEFT 0.21 computes it: y = x W^T + scale * (dropout(x) A^T) B^T with
// A (r, in), B (out, r), scale = alpha / r (alpha / sqrt(r) with rsLoRA). LoRA-FA keeps A frozen and
// trains only B, so nothing but the r-wide x A^T is needed for the backward.
import QLoRAKernels

public final class LoRA: LinearAdapter {
    public let inFeatures: Int
    public let outFeatures: Int
    public let rank: Int
    /// PEFT `scaling`.
    public let scale: Float
    public let dropout: Float
    public let freezeA: Bool
    /// (rank, in) and (out, rank), row-major; gradients in the same layout.
    public let a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>
    public let dA: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>

    /// The pointers are carved from the caller's parameter and gradient arenas, which outlive this.
    public init(inFeatures: Int, outFeatures: Int, rank: Int, scale: Float, dropout: Float, freezeA: Bool,
                a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>,
                dA: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>) {
        precondition(rank > 0 && dropout >= 0 && dropout < 1)
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.rank = rank
        self.scale = scale
        self.dropout = dropout
        self.freezeA = freezeA
        self.a = a
        self.b = b
        self.dA = dA
        self.dB = dB
    }

    /// Saves xa = dropout(x) A^T (rows, rank).
    public var savedWidth: Int { rank }

    public var parameters: [AdapterTensor] {
        [AdapterTensor(role: "lora_A", shape: [rank, inFeatures], values: a, gradient: dA, trainable: !freezeA),
         AdapterTensor(role: "lora_B", shape: [outFeatures, rank], values: b, gradient: dB, trainable: true)]
    }

    /// dropout(x) into `context.scratch`, or x itself when no dropout applies.
    private func droppedInput(_ x: UnsafePointer<Float>, rows: Int, context: AdapterContext) -> UnsafePointer<Float> {
        guard dropout > 0 && context.training else { return x }
        QLoRAKernels.dropout(context.scratch, x, count: rows * inFeatures, p: dropout, seed: context.dropoutSeed)
        return UnsafePointer(context.scratch)
    }

    public func recomputeSaved(_ x: UnsafePointer<Float>, saved xa: UnsafeMutablePointer<Float>, rows: Int, context: AdapterContext) {
        // xa = dropout(x) A^T                                    (rows, r)
        BLAS.sgemm(xa, droppedInput(x, rows: rows, context: context), a, m: rows, n: rank, k: inFeatures, transposeB: true)
    }

    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, saved xa: UnsafeMutablePointer<Float>,
                        rows: Int, context: AdapterContext) {
        recomputeSaved(x, saved: xa, rows: rows, context: context)
        // y += scale * xa B^T                                    (rows, out)
        BLAS.sgemm(y, xa, b, m: rows, n: outFeatures, k: rank, transposeB: true, alpha: scale, beta: 1)
    }

    public func backward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                         saved xa: UnsafePointer<Float>, rows: Int, context: AdapterContext) {
        // y += scale * xa B^T  =>  dB += scale * dy^T xa          (out, r)
        BLAS.sgemm(dB, dy, xa, m: outFeatures, n: rank, k: rows, transposeA: true, transposeB: false, alpha: scale, beta: 1)
        //                      dxa = scale * dy B                 (rows, r), in scratch2
        let dxa = context.scratch2
        BLAS.sgemm(dxa, dy, b, m: rows, n: rank, k: outFeatures, transposeB: false, alpha: scale)
        // xa = dropout(x) A^T  =>  dA += dxa^T dropout(x)         (r, in)
        if !freezeA {
            let input = droppedInput(x, rows: rows, context: context)
            BLAS.sgemm(dA, dxa, input, m: rank, n: inFeatures, k: rows, transposeA: true, transposeB: false, beta: 1)
        }
        //                      dx += dropout'(dxa A)              (rows, in)
        if dropout > 0 && context.training {
            let dInput = context.scratch
            BLAS.sgemm(dInput, dxa, a, m: rows, n: inFeatures, k: rank, transposeB: false)
            QLoRAKernels.dropout(dInput, dInput, count: rows * inFeatures, p: dropout, seed: context.dropoutSeed)
            addInPlace(dx, dInput, count: rows * inFeatures)
        } else {
            BLAS.sgemm(dx, dxa, a, m: rows, n: inFeatures, k: rank, transposeB: false, beta: 1)
        }
    }
}
