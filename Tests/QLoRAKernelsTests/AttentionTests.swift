// Attention: the fp32 kernels against their Double twins over awkward shapes with packed segments,
// the packed mask against running each segment alone, and the twins' backward against central
// differences of their forward.
import Testing
import QLoRAKernels
import _TestSupport

struct AttentionTests {
    struct Shape: CustomStringConvertible, Sendable {
        var batch, seqLen, heads, kvHeads, headDim: Int
        var qCount: Int { batch * seqLen * heads * headDim }
        var kvCount: Int { batch * seqLen * kvHeads * headDim }
        var description: String { "B\(batch) T\(seqLen) H\(heads)/\(kvHeads) D\(headDim)" }
    }

    /// Sequence 0 holds one example; sequence b > 0 packs examples whose lengths cycle through
    /// 3, 1, 6, 2, 9, 4 starting at the b-th.
    static func segmentStarts(batch: Int, seqLen: Int) -> [Int32] {
        let lengths = [3, 1, 6, 2, 9, 4]
        var starts: [Int32] = []
        for b in 0..<batch {
            var start = 0, index = b, end = b == 0 ? seqLen : lengths[b % lengths.count]
            for t in 0..<seqLen {
                if t == end {
                    start = t
                    index += 1
                    end = t + lengths[index % lengths.count]
                }
                starts.append(Int32(start))
            }
        }
        return starts
    }

    /// Runs the fp32 forward and backward; dq, dk, dv start as NaN to prove they are overwritten.
    static func run(_ s: Shape, q: [Float], k: [Float], v: [Float], dOut: [Float], segments: [Int32])
        -> (out: [Float], lse: [Float], dq: [Float], dk: [Float], dv: [Float]) {
        var out = [Float](repeating: .nan, count: s.qCount), lse = [Float](repeating: .nan, count: s.batch * s.heads * s.seqLen)
        var dq = out, dk = [Float](repeating: .nan, count: s.kvCount), dv = dk
        var scratch = [Float](repeating: .nan, count: attentionScratchCount(
            batch: s.batch, seqLen: s.seqLen, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim))
        attentionForward(&out, &lse, q, k, v, segments, &scratch, batch: s.batch, seqLen: s.seqLen, heads: s.heads,
                         kvHeads: s.kvHeads, headDim: s.headDim)
        attentionBackward(&dq, &dk, &dv, dOut, out, lse, q, k, v, segments, &scratch, batch: s.batch, seqLen: s.seqLen,
                          heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim)
        return (out, lse, dq, dk, dv)
    }

    static let shapes: [Shape] = [1, 5, 17, 40].flatMap { T in
        [4, 16, 64].flatMap { D in
            [(1, 1), (4, 2), (6, 3)].map { Shape(batch: 2, seqLen: T, heads: $0.0, kvHeads: $0.1, headDim: D) }
        }
    }

    @Test(arguments: shapes)
    func kernelsMatchReference(shape s: Shape) {
        let seed = UInt64(s.seqLen * 10_000 + s.headDim * 100 + s.heads)
        let q = normals(s.qCount, seed: seed), k = normals(s.kvCount, seed: seed + 1)
        let v = normals(s.kvCount, seed: seed + 2), dOut = normals(s.qCount, seed: seed + 3)
        let segments = Self.segmentStarts(batch: s.batch, seqLen: s.seqLen)
        let fast = Self.run(s, q: q, k: k, v: v, dOut: dOut, segments: segments)

        var out = [Double](repeating: 0, count: s.qCount), lse = [Double](repeating: 0, count: s.batch * s.heads * s.seqLen)
        Reference.attentionForward(&out, &lse, q.asDouble, k.asDouble, v.asDouble, segments, batch: s.batch,
                                   seqLen: s.seqLen, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim)
        var dq = [Double](repeating: .nan, count: s.qCount), dk = [Double](repeating: .nan, count: s.kvCount), dv = dk
        Reference.attentionBackward(&dq, &dk, &dv, dOut.asDouble, out, lse, q.asDouble, k.asDouble, v.asDouble, segments,
                                    batch: s.batch, seqLen: s.seqLen, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim)

        for (name, actual, expected, tolerance) in [("out", fast.out, out, Tolerance.forward), ("lse", fast.lse, lse, .forward),
                                                    ("dq", fast.dq, dq, .attentionGradient),
                                                    ("dk", fast.dk, dk, .attentionGradient),
                                                    ("dv", fast.dv, dv, .attentionGradient)] {
            let check = compare(actual, expected, tolerance)
            #expect(check.passed, "\(s) \(name): \(check)")
        }
    }

    @Test func packedSegmentsMatchSeparateSequences() {
        let (T, H, Hkv, D) = (17, 4, 2, 16)
        let bounds = [0, 5, 12, 17]
        let packed = Shape(batch: 1, seqLen: T, heads: H, kvHeads: Hkv, headDim: D)
        let q = normals(packed.qCount, seed: 51), k = normals(packed.kvCount, seed: 52)
        let v = normals(packed.kvCount, seed: 53), dOut = normals(packed.qCount, seed: 54)
        var segments: [Int32] = []
        for i in 0..<3 { segments += Array(repeating: Int32(bounds[i]), count: bounds[i + 1] - bounds[i]) }
        let whole = Self.run(packed, q: q, k: k, v: v, dOut: dOut, segments: segments)

        for i in 0..<3 {
            let (lo, hi) = (bounds[i], bounds[i + 1])
            let alone = Shape(batch: 1, seqLen: hi - lo, heads: H, kvHeads: Hkv, headDim: D)
            let qRows = lo * H * D..<hi * H * D, kvRows = lo * Hkv * D..<hi * Hkv * D
            let part = Self.run(alone, q: Array(q[qRows]), k: Array(k[kvRows]), v: Array(v[kvRows]),
                                dOut: Array(dOut[qRows]), segments: Array(repeating: 0, count: hi - lo))
            let lse = (0..<H).flatMap { h in whole.lse[h * T + lo..<h * T + hi] }
            for (name, packedPart, separate) in [("out", Array(whole.out[qRows]), part.out), ("lse", lse, part.lse),
                                                 ("dq", Array(whole.dq[qRows]), part.dq),
                                                 ("dk", Array(whole.dk[kvRows]), part.dk),
                                                 ("dv", Array(whole.dv[kvRows]), part.dv)] {
                let check = compare(packedPart, separate.asDouble, .forward)
                #expect(check.passed, "segment \(lo)..<\(hi) \(name): \(check)")
            }
        }
    }

    /// The narrowest mask: every token its own segment. Only s = t is allowed, so P = 1: out is the
    /// token's own value row, lse its own scaled score, and dq = dk = 0, dv = dOut summed over the group.
    @Test func singleTokenSegmentsAttendToThemselves() {
        let s = Shape(batch: 1, seqLen: 19, heads: 4, kvHeads: 2, headDim: 16)
        let q = normals(s.qCount, seed: 71), k = normals(s.kvCount, seed: 72)
        let v = normals(s.kvCount, seed: 73), dOut = normals(s.qCount, seed: 74)
        let result = Self.run(s, q: q, k: k, v: v, dOut: dOut, segments: (0..<Int32(s.seqLen)).map { $0 })
        var out = [Float](), dv = [Float](repeating: 0, count: s.kvCount)
        for t in 0..<s.seqLen {
            for h in 0..<s.heads {
                let kvRow = (t * s.kvHeads + h / 2) * s.headDim, qRow = (t * s.heads + h) * s.headDim
                out += v[kvRow..<kvRow + s.headDim]
                for d in 0..<s.headDim { dv[kvRow + d] += dOut[qRow + d] }
            }
        }
        let zeros = [Double](repeating: 0, count: s.qCount)
        for (name, actual, expected) in [("out", result.out, out.asDouble), ("dv", result.dv, dv.asDouble),
                                         ("dq", result.dq, zeros), ("dk", result.dk, Array(zeros[..<s.kvCount]))] {
            let check = compare(actual, expected, .forward)
            #expect(check.passed, "\(name): \(check)")
        }
    }

    @Test func referenceBackwardMatchesCentralDifferences() {
        let s = Shape(batch: 2, seqLen: 5, heads: 4, kvHeads: 2, headDim: 4)
        let segments = Self.segmentStarts(batch: s.batch, seqLen: s.seqLen)
        let q = normals(s.qCount, seed: 61).asDouble, k = normals(s.kvCount, seed: 62).asDouble
        let v = normals(s.kvCount, seed: 63).asDouble, lossWeights = normals(s.qCount, seed: 64).asDouble
        func forward(_ q: [Double], _ k: [Double], _ v: [Double]) -> (out: [Double], lse: [Double]) {
            var out = [Double](repeating: 0, count: s.qCount), lse = [Double](repeating: 0, count: s.batch * s.heads * s.seqLen)
            Reference.attentionForward(&out, &lse, q, k, v, segments, batch: s.batch, seqLen: s.seqLen, heads: s.heads,
                                       kvHeads: s.kvHeads, headDim: s.headDim)
            return (out, lse)
        }
        let (out, lse) = forward(q, k, v)
        var dq = [Double](repeating: 0, count: s.qCount), dk = [Double](repeating: 0, count: s.kvCount), dv = dk
        Reference.attentionBackward(&dq, &dk, &dv, lossWeights, out, lse, q, k, v, segments, batch: s.batch,
                                    seqLen: s.seqLen, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim)
        let checks = [
            ("dq", compare(dq, centralDifferences(q) { weightedSum(forward($0, k, v).out, lossWeights) }, .centralDifference)),
            ("dk", compare(dk, centralDifferences(k) { weightedSum(forward(q, $0, v).out, lossWeights) }, .centralDifference)),
            ("dv", compare(dv, centralDifferences(v) { weightedSum(forward(q, k, $0).out, lossWeights) }, .centralDifference)),
        ]
        for (name, check) in checks { #expect(check.passed, "\(name): \(check)") }
    }
}
