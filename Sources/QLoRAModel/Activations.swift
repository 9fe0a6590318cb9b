// What the forward keeps for the backward, per decoder layer, and the model-wide buffers of one
// (batch, seq) shape. Shapes use N = B*T rows, C model, Hd = H*D, KVd = Hkv*D, F ffn, R rank.

/// The dimensions every buffer size derives from.
public struct ModelDimensions: Sendable, Equatable {
    public let B, T, C, H, Hkv, D, F, V, L: Int
    public var N: Int { B * T }
    public var Hd: Int { H * D }
    public var KVd: Int { Hkv * D }
}

/// One layer's saved activations (non-owning views into the activation arena).
struct LayerActivations {
    var input: UnsafeMutablePointer<Float>   // (N, C) the residual stream entering the layer
    let ln1: UnsafeMutablePointer<Float>     // (N, C) input_layernorm output
    let rstd1: UnsafeMutablePointer<Float>   // (N)
    let q: UnsafeMutablePointer<Float>       // (N, Hd) after RoPE
    let k: UnsafeMutablePointer<Float>       // (N, KVd) after RoPE
    let v: UnsafeMutablePointer<Float>       // (N, KVd)
    let att: UnsafeMutablePointer<Float>     // (N, Hd) attention output, o_proj input
    let lse: UnsafeMutablePointer<Float>     // (B, H, T) log-sum-exp of the scaled scores
    let mid: UnsafeMutablePointer<Float>     // (N, C) input + o_proj(att)
    let ln2: UnsafeMutablePointer<Float>     // (N, C) post_attention_layernorm output
    let rstd2: UnsafeMutablePointer<Float>   // (N)
    let gate: UnsafeMutablePointer<Float>    // (N, F) gate_proj output (dGate in place in the backward)
    let up: UnsafeMutablePointer<Float>      // (N, F) up_proj output (dUp in place in the backward)
    let saved: [Projection: UnsafeMutablePointer<Float>]  // (N, adapter savedWidth) per adapted projection

    /// Float counts in carving order; `withInput` false when inputs live elsewhere (checkpointing).
    static func sizes(_ d: ModelDimensions, savedWidths: [(Projection, Int)], withInput: Bool) -> [Int] {
        (withInput ? [d.N * d.C] : []) + [d.N * d.C, d.N, d.N * d.Hd, d.N * d.KVd, d.N * d.KVd, d.N * d.Hd, d.B * d.H * d.T,
                                          d.N * d.C, d.N * d.C, d.N, d.N * d.F, d.N * d.F] + savedWidths.map { d.N * $0.1 }
    }

    init(_ d: ModelDimensions, savedWidths: [(Projection, Int)], arena: Arena, input: UnsafeMutablePointer<Float>?) {
        self.input = input ?? arena.carve(d.N * d.C)
        ln1 = arena.carve(d.N * d.C)
        rstd1 = arena.carve(d.N)
        q = arena.carve(d.N * d.Hd)
        k = arena.carve(d.N * d.KVd)
        v = arena.carve(d.N * d.KVd)
        att = arena.carve(d.N * d.Hd)
        lse = arena.carve(d.B * d.H * d.T)
        mid = arena.carve(d.N * d.C)
        ln2 = arena.carve(d.N * d.C)
        rstd2 = arena.carve(d.N)
        gate = arena.carve(d.N * d.F)
        up = arena.carve(d.N * d.F)
        var saved: [Projection: UnsafeMutablePointer<Float>] = [:]
        for (projection, width) in savedWidths { saved[projection] = arena.carve(d.N * width) }
        self.saved = saved
    }
}

/// Buffers of the backward and of the loss, shared by all layers (the scratch arena).
struct Workspace {
    let dResidual: UnsafeMutablePointer<Float>  // (N, C) gradient of the residual stream
    let dNorm: UnsafeMutablePointer<Float>      // (N, C) gradient of a norm's output; also d(final norm)
    let dAtt: UnsafeMutablePointer<Float>       // (N, Hd)
    let dq: UnsafeMutablePointer<Float>         // (N, Hd)
    let dk: UnsafeMutablePointer<Float>         // (N, KVd)
    let dv: UnsafeMutablePointer<Float>         // (N, KVd)
    let hidden: UnsafeMutablePointer<Float>     // (N, F) swiglu output, down_proj input
    let dHidden: UnsafeMutablePointer<Float>    // (N, F)
    let adapter1: UnsafeMutablePointer<Float>   // (N, max(C, Hd, F, R)) adapter scratch: dropout(x), dx
    let adapter2: UnsafeMutablePointer<Float>   // (N, max(C, Hd, F, R)): dxa (N, R)
    let attention: UnsafeMutablePointer<Float>  // attentionScratchCount floats
    let logits: UnsafeMutablePointer<Float>     // (chunkRows, V) logits, then dLogits, of one chunk
    let losses: UnsafeMutablePointer<Float>     // (chunkRows)
    let finalNorm: UnsafeMutablePointer<Float>  // (N, C) model.norm output
    let finalRstd: UnsafeMutablePointer<Float>  // (N)

    /// - Parameter rank: the largest adapter rank R (an adapter's scratch holds rows x R as well as
    ///   rows x its features).
    static func sizes(_ d: ModelDimensions, attentionScratch: Int, chunkRows: Int, rank: Int) -> [Int] {
        let wide = d.N * max(d.C, d.Hd, d.F, rank)
        return [d.N * d.C, d.N * d.C, d.N * d.Hd, d.N * d.Hd, d.N * d.KVd, d.N * d.KVd, d.N * d.F, d.N * d.F, wide, wide,
                attentionScratch, chunkRows * d.V, chunkRows, d.N * d.C, d.N]
    }

    init(_ d: ModelDimensions, attentionScratch: Int, chunkRows: Int, rank: Int, arena: Arena) {
        let wide = d.N * max(d.C, d.Hd, d.F, rank)
        dResidual = arena.carve(d.N * d.C)
        dNorm = arena.carve(d.N * d.C)
        dAtt = arena.carve(d.N * d.Hd)
        dq = arena.carve(d.N * d.Hd)
        dk = arena.carve(d.N * d.KVd)
        dv = arena.carve(d.N * d.KVd)
        hidden = arena.carve(d.N * d.F)
        dHidden = arena.carve(d.N * d.F)
        adapter1 = arena.carve(wide)
        adapter2 = arena.carve(wide)
        attention = arena.carve(attentionScratch)
        logits = arena.carve(chunkRows * d.V)
        losses = arena.carve(chunkRows)
        finalNorm = arena.carve(d.N * d.C)
        finalRstd = arena.carve(d.N)
    }
}
