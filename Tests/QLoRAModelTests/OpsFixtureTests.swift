// Each op's forward and backward against PyTorch/transformers on the same inputs
// (Tests/Fixtures/ops, written by tools/reference/make_model_fixtures.py), and the RoPE tables.
import QLoRAKernels
import QLoRAModel
import Testing
import _TestSupport

/// fp32 op outputs: different summation order than PyTorch only.
let opForwardTolerance = (rtol: 1e-5, atol: 1e-6)
/// fp32 op gradients; attention's dq/dk/dv sum cancelling terms, so absolute error near zero ~1e-6.
let opGradientTolerance = (rtol: 1e-4, atol: 1e-5)

struct OpsFixture {
    let fixture: Fixture
    init() throws { fixture = try Fixture("ops") }
    func floats(_ name: String) -> [Float] { fixture.floats(name) }

    func expectClose(_ actual: [Float], _ name: String, gradient: Bool = false) {
        let tolerance = gradient ? opGradientTolerance : opForwardTolerance
        let check = compare(actual, floats(name), rtol: tolerance.rtol, atol: tolerance.atol)
        #expect(check.passed, "\(name): \(check)")
    }
}

@Test func rmsNormMatchesTransformers() throws {
    let ops = try OpsFixture()
    let x = ops.floats("rmsnorm.x"), weight = ops.floats("rmsnorm.weight"), dOut = ops.floats("rmsnorm.dout")
    let rows = 5, dim = 72
    var out = [Float](repeating: 0, count: x.count), rstd = [Float](repeating: 0, count: rows), dx = out
    rmsNormForward(&out, &rstd, x, weight, rows: rows, dim: dim, eps: 1e-5)
    rmsNormBackward(&dx, dOut, x, weight, rstd, rows: rows, dim: dim)
    ops.expectClose(out, "rmsnorm.out")
    ops.expectClose(dx, "rmsnorm.dx", gradient: true)
}

@Test func ropeTablesAndRotationMatchTransformers() throws {
    let ops = try OpsFixture()
    let inverse = RoPETable.inverseFrequencies(headDim: 16, config: RoPEConfig(theta: 10000))
    ops.expectClose(inverse, "rope.inv_freq.default")
    let llama3 = RoPEConfig(theta: 500_000, scaling: .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8))
    ops.expectClose(RoPETable.inverseFrequencies(headDim: 16, config: llama3), "rope.inv_freq.llama3")
    let (cosTable, sinTable) = RoPETable.tables(positions: 7, headDim: 16, config: RoPEConfig(theta: 10000))
    ops.expectClose(cosTable, "rope.cos")
    ops.expectClose(sinTable, "rope.sin")

    let positions = ops.fixture.values("rope.position_ids", as: Int32.self)
    var x = ops.floats("rope.x"), dx = ops.floats("rope.dout")
    ropeForward(&x, positions, ops.floats("rope.cos"), ops.floats("rope.sin"), rows: 14, heads: 3, headDim: 16, maxPositions: 7)
    ropeBackward(&dx, positions, ops.floats("rope.cos"), ops.floats("rope.sin"), rows: 14, heads: 3, headDim: 16, maxPositions: 7)
    ops.expectClose(x, "rope.out")
    ops.expectClose(dx, "rope.dx", gradient: true)
}

@Test func packedAttentionMatchesTransformersEager() throws {
    let ops = try OpsFixture()
    let (B, T, H, Hkv, D) = (2, 9, 4, 2, 8)
    let ids = ops.fixture.values("attention.sequence_ids", as: Int32.self)
    let batch = TokenBatch(batch: B, seqLen: T, tokens: [Int32](repeating: 0, count: B * T),
                           targets: [Int32](repeating: TokenBatch.ignore, count: B * T), sequenceIds: ids)
    let q = ops.floats("attention.q"), k = ops.floats("attention.k"), v = ops.floats("attention.v")
    var out = [Float](repeating: .nan, count: q.count), lse = [Float](repeating: .nan, count: B * H * T)
    var dq = out, dk = [Float](repeating: .nan, count: k.count), dv = dk
    var scratch = [Float](repeating: 0, count: attentionScratchCount(batch: B, seqLen: T, heads: H, kvHeads: Hkv, headDim: D))
    attentionForward(&out, &lse, q, k, v, batch.segmentStarts, &scratch, batch: B, seqLen: T, heads: H, kvHeads: Hkv, headDim: D)
    attentionBackward(&dq, &dk, &dv, ops.floats("attention.dout"), out, lse, q, k, v, batch.segmentStarts, &scratch,
                      batch: B, seqLen: T, heads: H, kvHeads: Hkv, headDim: D)
    ops.expectClose(out, "attention.out")
    ops.expectClose(dq, "attention.dq", gradient: true)
    ops.expectClose(dk, "attention.dk", gradient: true)
    ops.expectClose(dv, "attention.dv", gradient: true)
}

@Test func swigluMatchesTransformers() throws {
    let ops = try OpsFixture()
    let gate = ops.floats("swiglu.gate"), up = ops.floats("swiglu.up")
    var out = [Float](repeating: 0, count: gate.count), dGate = out, dUp = out
    swigluForward(&out, gate, up, count: gate.count)
    swigluBackward(&dGate, &dUp, ops.floats("swiglu.dout"), gate, up, count: gate.count)
    ops.expectClose(out, "swiglu.out")
    ops.expectClose(dGate, "swiglu.dgate", gradient: true)
    ops.expectClose(dUp, "swiglu.dup", gradient: true)
}

@Test func crossEntropyMatchesTorch() throws {
    let ops = try OpsFixture()
    let targets = ops.fixture.values("cross_entropy.targets", as: Int32.self)
    let count = targets.filter { $0 != TokenBatch.ignore }.count
    var logits = ops.floats("cross_entropy.logits"), losses = [Float](repeating: 0, count: targets.count)
    crossEntropyForwardBackward(&logits, &losses, targets, rows: targets.count, vocab: 300, dLogitScale: 1 / Float(count))
    ops.expectClose([losses.reduce(0, +) / Float(count)], "cross_entropy.loss")
    ops.expectClose(logits, "cross_entropy.dlogits", gradient: true)
}
