// Causal self-attention with grouped-query heads and packed-sequence masks (transformers
// `eager_attention_forward` in fp32), flash-attention style: the forward keeps only the output and
// the log-sum-exp per query, and the backward recomputes the probabilities, so no (B, H, T, T)
// tensor exists. Dropout, sliding windows and KV caches are left out.
import CQLoRAKernels

/// Floats of scratch that `attentionForward` and `attentionBackward` need for these shapes (one
/// slice per worker thread). Compute it once, allocate it, and pass the same buffer to both.
/// - Precondition: the shapes are valid for `attentionForward`.
public func attentionScratchCount(batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) -> Int {
    checkAttentionShapes(batch: batch, seqLen: seqLen, heads: heads, kvHeads: kvHeads, headDim: headDim)
    return min(ProcessInfoCores.count, batch * heads) * qlora_attention_scratch_floats(seqLen, headDim)
}

/// Causal attention forward. Query head `h` uses kv head `h / (heads / kvHeads)`. With
/// `scale = 1 / sqrt(headDim)` (rounded to Float), token `t` of sequence `b` attends to keys `s` of the
/// same sequence with `segmentStart[b * seqLen + t] <= s <= t`:
/// `S[s] = scale * (q[b,t,h,:] . k[b,s,kv,:])`, `lse[b,h,t] = log(sum_s e^S[s])`,
/// `out[b,t,h,:] = sum_s e^(S[s] - lse) * v[b,s,kv,:]`. Sums are accumulated in double where they
/// span keys. A fully masked row cannot happen: `s = t` is always allowed.
/// - Parameters:
///   - out: `(batch * seqLen, heads, headDim)`, overwritten. Must not alias an input.
///   - lse: `(batch, heads, seqLen)`, overwritten; kept for the backward.
///   - q: `(batch * seqLen, heads, headDim)`.
///   - k, v: `(batch * seqLen, kvHeads, headDim)`.
///   - segmentStart: `(batch, seqLen)`, the index within its sequence of the first token of the
///     packed example each token belongs to (all zeros for one example per sequence).
///   - scratch: `attentionScratchCount(...)` floats, clobbered.
/// - Precondition: `heads` is a multiple of `kvHeads`, `headDim <= 256`,
///   `0 <= segmentStart[b * seqLen + t] <= t`.
public func attentionForward(
    _ out: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>, _ q: UnsafePointer<Float>,
    _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ segmentStart: UnsafePointer<Int32>,
    _ scratch: UnsafeMutablePointer<Float>, batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
) {
    checkAttentionShapes(batch: batch, seqLen: seqLen, heads: heads, kvHeads: kvHeads, headDim: headDim)
    checkSegments(segmentStart, batch: batch, seqLen: seqLen)
    let (T, H, Hkv, D) = (seqLen, heads, kvHeads, headDim)
    let out = UnsafeSendable(out), lse = UnsafeSendable(lse), q = UnsafeSendable(q), k = UnsafeSendable(k)
    let v = UnsafeSendable(v), segmentStart = UnsafeSendable(segmentStart), scratch = UnsafeSendable(scratch)
    let slice = qlora_attention_scratch_floats(T, D)
    forEachAttentionItem(batch * H, batch: batch, seqLen: T, heads: H, headDim: D) { item, slot in
        let (b, h) = item.quotientAndRemainder(dividingBy: H)
        let kv = h / (H / Hkv)
        let qRows = b * T * H * D + h * D, kvRows = b * T * Hkv * D + kv * D
        qlora_attention_forward_head(out.raw + qRows, lse.raw + item * T, q.raw + qRows, k.raw + kvRows, v.raw + kvRows,
                                     segmentStart.raw + b * T, scratch.raw + slot * slice, T, D, H * D, Hkv * D)
    }
}

/// Causal attention backward, recomputing `P[s] = e^(S[s] - lse)` from `q`, `k` and `lse`
/// (FlashAttention-2, Dao 2023, algorithm 2): with `D_t = dOut[b,t,h,:] . out[b,t,h,:]`,
/// `dS[s] = P[s] * (dOut . v[s] - D_t)`, `dq[t] = scale * sum_s dS[s] k[s]`,
/// `dk[s] = scale * sum_{t,h in group} dS[s] q[t]`, `dv[s] = sum_{t,h in group} P[s] dOut[t]`.
/// Overwrites `dq`, `dk` and `dv`; none may alias an input or each other.
/// - Parameters:
///   - dq: `(batch * seqLen, heads, headDim)`; dk, dv: `(batch * seqLen, kvHeads, headDim)`.
///   - dOut, out: `(batch * seqLen, heads, headDim)`; lse: `(batch, heads, seqLen)`, from the forward.
///   - q, k, v, segmentStart: as given to `attentionForward`.
///   - scratch: `attentionScratchCount(...)` floats, clobbered.
/// - Precondition: as `attentionForward`.
public func attentionBackward(
    _ dq: UnsafeMutablePointer<Float>, _ dk: UnsafeMutablePointer<Float>, _ dv: UnsafeMutablePointer<Float>,
    _ dOut: UnsafePointer<Float>, _ out: UnsafePointer<Float>, _ lse: UnsafePointer<Float>, _ q: UnsafePointer<Float>,
    _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ segmentStart: UnsafePointer<Int32>,
    _ scratch: UnsafeMutablePointer<Float>, batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
) {
    checkAttentionShapes(batch: batch, seqLen: seqLen, heads: heads, kvHeads: kvHeads, headDim: headDim)
    checkSegments(segmentStart, batch: batch, seqLen: seqLen)
    let (T, H, Hkv, D) = (seqLen, heads, kvHeads, headDim)
    let group = H / Hkv
    let dq = UnsafeSendable(dq), dk = UnsafeSendable(dk), dv = UnsafeSendable(dv), dOut = UnsafeSendable(dOut)
    let out = UnsafeSendable(out), lse = UnsafeSendable(lse), q = UnsafeSendable(q), k = UnsafeSendable(k)
    let v = UnsafeSendable(v), segmentStart = UnsafeSendable(segmentStart), scratch = UnsafeSendable(scratch)
    let slice = qlora_attention_scratch_floats(T, D)
    // One item per (b, kv head) with its `group` query heads, so writes to dk and dv are disjoint.
    forEachAttentionItem(batch * Hkv, batch: batch, seqLen: T, heads: H, headDim: D) { item, slot in
        let (b, kv) = item.quotientAndRemainder(dividingBy: Hkv)
        let h0 = kv * group
        let qRows = b * T * H * D + h0 * D, kvRows = b * T * Hkv * D + kv * D
        qlora_attention_backward_group(dq.raw + qRows, dk.raw + kvRows, dv.raw + kvRows, dOut.raw + qRows,
                                       out.raw + qRows, lse.raw + (b * H + h0) * T, q.raw + qRows, k.raw + kvRows,
                                       v.raw + kvRows, segmentStart.raw + b * T, scratch.raw + slot * slice, T, D, group,
                                       H * D, Hkv * D)
    }
}

private func checkAttentionShapes(batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) {
    precondition(batch > 0 && seqLen > 0 && heads > 0 && kvHeads > 0 && heads % kvHeads == 0,
                 "attention shapes: batch \(batch), seqLen \(seqLen), heads \(heads), kvHeads \(kvHeads)")
    precondition(headDim > 0 && headDim <= Int(QLORA_ATTENTION_MAX_HEAD_DIM), "headDim \(headDim) not in 1...256")
}

private func checkSegments(_ segmentStart: UnsafePointer<Int32>, batch: Int, seqLen: Int) {
    for i in 0..<batch * seqLen {
        precondition(segmentStart[i] >= 0 && Int(segmentStart[i]) <= i % seqLen,
                     "segmentStart[\(i)] = \(segmentStart[i]) is not in 0...\(i % seqLen)")
    }
}

/// Runs `body(item, slot)` for every item in `0..<items`, where each concurrently running body has
/// its own `slot` (scratch slice) below `min(cores, items)`: worker `w` takes items w, w + workers, ...
/// Work below about 64 K multiply-adds runs inline on one worker.
private func forEachAttentionItem(
    _ items: Int, batch: Int, seqLen: Int, heads: Int, headDim: Int,
    _ body: @Sendable (_ item: Int, _ slot: Int) -> Void
) {
    let work = batch * heads * seqLen * (seqLen + 1) / 2 * headDim
    let workers = work < 1 << 16 ? 1 : min(ProcessInfoCores.count, items)
    parallelChunks(count: workers) { slots in
        for slot in slots {
            for item in stride(from: slot, to: items, by: workers) { body(item, slot) }
        }
    }
}

extension Reference {
    /// Double twin of `attentionForward` (no scratch; `scale = 1 / sqrt(headDim)` in Double).
    public static func attentionForward(
        _ out: UnsafeMutablePointer<Double>, _ lse: UnsafeMutablePointer<Double>, _ q: UnsafePointer<Double>,
        _ k: UnsafePointer<Double>, _ v: UnsafePointer<Double>, _ segmentStart: UnsafePointer<Int32>,
        batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
    ) {
        let (T, H, Hkv, D) = (seqLen, heads, kvHeads, headDim)
        let scale = 1 / Double(D).squareRoot()
        var scores = [Double](repeating: 0, count: T)
        for b in 0..<batch {
            for h in 0..<H {
                let kv = h / (H / Hkv)
                for t in 0..<T {
                    let keys = Int(segmentStart[b * T + t])...t
                    let qt = q + ((b * T + t) * H + h) * D
                    for s in keys {
                        let ks = k + ((b * T + s) * Hkv + kv) * D
                        var dot = 0.0
                        for d in 0..<D { dot += qt[d] * ks[d] }
                        scores[s] = scale * dot
                    }
                    var m = -Double.infinity
                    for s in keys { m = max(m, scores[s]) }
                    var sum = 0.0
                    for s in keys { sum += exp(scores[s] - m) }
                    let lseT = m + log(sum)
                    lse[(b * H + h) * T + t] = lseT
                    let ot = out + ((b * T + t) * H + h) * D
                    for d in 0..<D { ot[d] = 0 }
                    for s in keys {
                        let p = exp(scores[s] - lseT), vs = v + ((b * T + s) * Hkv + kv) * D
                        for d in 0..<D { ot[d] += p * vs[d] }
                    }
                }
            }
        }
    }

    /// Double twin of `attentionBackward` (no scratch). Overwrites `dq`, `dk`, `dv`.
    public static func attentionBackward(
        _ dq: UnsafeMutablePointer<Double>, _ dk: UnsafeMutablePointer<Double>, _ dv: UnsafeMutablePointer<Double>,
        _ dOut: UnsafePointer<Double>, _ out: UnsafePointer<Double>, _ lse: UnsafePointer<Double>,
        _ q: UnsafePointer<Double>, _ k: UnsafePointer<Double>, _ v: UnsafePointer<Double>,
        _ segmentStart: UnsafePointer<Int32>, batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
    ) {
        let (T, H, Hkv, D) = (seqLen, heads, kvHeads, headDim)
        let scale = 1 / Double(D).squareRoot()
        dq.update(repeating: 0, count: batch * T * H * D)
        dk.update(repeating: 0, count: batch * T * Hkv * D)
        dv.update(repeating: 0, count: batch * T * Hkv * D)
        for b in 0..<batch {
            for h in 0..<H {
                let kv = h / (H / Hkv)
                for t in 0..<T {
                    let row = ((b * T + t) * H + h) * D
                    let qt = q + row, got = dOut + row, ot = out + row, dqt = dq + row
                    // D_t = dOut_t . out_t = sum_s P[s] (dOut_t . v_s)
                    var dt = 0.0
                    for d in 0..<D { dt += got[d] * ot[d] }
                    for s in Int(segmentStart[b * T + t])...t {
                        let kvRow = ((b * T + s) * Hkv + kv) * D
                        let ks = k + kvRow, vs = v + kvRow, dks = dk + kvRow, dvs = dv + kvRow
                        // forward: S = scale * q_t . k_s; P = e^(S - lse); out_t = sum_s P v_s
                        var qk = 0.0, dp = 0.0
                        for d in 0..<D {
                            qk += qt[d] * ks[d]
                            dp += got[d] * vs[d]
                        }
                        let p = exp(scale * qk - lse[(b * H + h) * T + t])
                        let dS = p * (dp - dt)
                        for d in 0..<D {
                            dqt[d] += scale * dS * ks[d]
                            dks[d] += scale * dS * qt[d]
                            dvs[d] += p * got[d]
                        }
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
