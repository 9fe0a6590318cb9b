// A Llama-family decoder over frozen weights (NF4 or float) with LoRA adapters: the forward, the
// hand-written backward of every op, a cross-entropy computed in row chunks so the (N, V) logits
// never exist at once, and optional per-layer gradient checkpointing. All buffers are laid out
// once for a (batch, seq) shape; a step allocates nothing.
import QLoRAKernels

/// Shape-dependent choices fixed when the model is laid out.
public struct ModelLayoutOptions: Sendable, Equatable {
    public var batch: Int
    public var seqLen: Int
    /// Keep only each layer's input and recompute the rest of the layer in the backward.
    public var gradientCheckpointing: Bool
    /// Bytes of one chunk of logits (rows x vocab floats); at least one row. Larger chunks make
    /// the lm_head's products faster (benchmarks/README.md) at the cost of memory.
    public var logitsChunkBytes: Int
    /// Floats of the scratch that frozen weight tiles are decoded into.
    public var tileCapacity: Int

    public init(batch: Int, seqLen: Int, gradientCheckpointing: Bool = false,
                logitsChunkBytes: Int = 64 << 20, tileCapacity: Int = TileScratch.defaultCapacity) {
        self.batch = batch
        self.seqLen = seqLen
        self.gradientCheckpointing = gradientCheckpointing
        self.logitsChunkBytes = logitsChunkBytes
        self.tileCapacity = tileCapacity
    }
}

public final class LlamaModel: @unchecked Sendable {
    public let weights: LlamaWeights
    public let adapters: LoRAAdapters
    public let options: ModelLayoutOptions
    public let dims: ModelDimensions
    /// Rows of logits per cross-entropy chunk.
    public let chunkRows: Int
    /// Bytes of the activation and scratch arenas (memory accounting).
    public var activationBytes: Int { activationArena.byteCount }
    public var workspaceBytes: Int { workspaceArena.byteCount + 4 * tiles.capacity }

    private let eps: Float
    private let activationArena: Arena
    private let workspaceArena: Arena
    private let tiles: TileScratch
    /// Saved activations: one set per layer, or with checkpointing one working set all share
    /// (read them through `activations(_:)`).
    private let layers: [LayerActivations]
    /// (L + 1) residual-stream inputs with checkpointing (the last is the final layer's output);
    /// without it, layer l+1's input doubles as layer l's output.
    private let inputs: [UnsafeMutablePointer<Float>]
    private let work: Workspace
    private let ropeCos: [Float], ropeSin: [Float]

    /// Called after each layer's forward (training and evaluation) and after each layer's backward,
    /// with the layer index: the trainer releases the layer's frozen weight pages there.
    public var layerDone: ((Int) -> Void)?

    public init(weights: LlamaWeights, adapters: LoRAAdapters, options: ModelLayoutOptions) {
        precondition(options.batch > 0 && options.seqLen > 0)
        let shape = weights.shape
        precondition(shape.headDim % 2 == 0, "RoPE needs an even head dimension")
        self.weights = weights
        self.adapters = adapters
        self.options = options
        eps = shape.rmsNormEps
        let savedWidths = Projection.allCases.compactMap { p in adapters.adapters.first?[p].map { (p, $0.savedWidth) } }
        let layout = Layout(shape: shape, savedWidths: savedWidths, options: options)
        let d = layout.dims
        dims = d
        chunkRows = layout.chunkRows
        let arena = Arena(name: "activations", sizes: layout.activationSizes)
        activationArena = arena
        if options.gradientCheckpointing {
            inputs = (0...d.L).map { _ in arena.carve(d.N * d.C) }
            layers = [LayerActivations(d, savedWidths: savedWidths, arena: arena, input: inputs[0])]
        } else {
            let final = arena.carve(d.N * d.C)
            layers = (0..<d.L).map { _ in LayerActivations(d, savedWidths: savedWidths, arena: arena, input: nil) }
            inputs = layers.map(\.input) + [final]
        }
        workspaceArena = Arena(name: "workspace", sizes: layout.workspaceSizes)
        work = Workspace(d, attentionScratch: layout.attentionScratch, chunkRows: chunkRows, rank: layout.rank, arena: workspaceArena)
        tiles = TileScratch(capacity: options.tileCapacity)
        (ropeCos, ropeSin) = RoPETable.tables(positions: d.T, headDim: d.D, config: shape.rope)
    }

    /// Bytes `init` allocates for a model of `shape` with `lora`'s adapters (for planning before
    /// anything is loaded): the activation arena, and the workspace arena plus the tile scratch.
    public static func layoutBytes(shape: ModelShape, lora: LoRAConfig, options: ModelLayoutOptions) -> (activations: Int, workspace: Int) {
        let savedWidths = lora.orderedTargets.map { ($0, lora.rank) }
        let layout = Layout(shape: shape, savedWidths: savedWidths, options: options)
        return (Arena.byteCount(sizes: layout.activationSizes), Arena.byteCount(sizes: layout.workspaceSizes) + 4 * options.tileCapacity)
    }

    /// The arena sizes of one layout (one place for `init` and `layoutBytes`).
    private struct Layout {
        let dims: ModelDimensions
        let chunkRows: Int
        let attentionScratch: Int
        /// The largest adapter rank (0 without adapters).
        let rank: Int
        let activationSizes: [Int]
        let workspaceSizes: [Int]

        init(shape: ModelShape, savedWidths: [(Projection, Int)], options: ModelLayoutOptions) {
            let d = ModelDimensions(B: options.batch, T: options.seqLen, C: shape.hiddenSize, H: shape.heads, Hkv: shape.kvHeads,
                                    D: shape.headDim, F: shape.intermediateSize, V: shape.vocabSize, L: shape.layers)
            dims = d
            chunkRows = max(1, min(d.N, options.logitsChunkBytes / (4 * d.V)))
            // Activations: L layer sets plus the final output, or with checkpointing L + 1 inputs and one set.
            let sets = options.gradientCheckpointing ? 1 : d.L
            var sizes = [Int](repeating: d.N * d.C, count: options.gradientCheckpointing ? d.L + 1 : 1)
            for _ in 0..<sets { sizes += LayerActivations.sizes(d, savedWidths: savedWidths, withInput: !options.gradientCheckpointing) }
            activationSizes = sizes
            attentionScratch = attentionScratchCount(batch: d.B, seqLen: d.T, heads: d.H, kvHeads: d.Hkv, headDim: d.D)
            rank = savedWidths.map(\.1).max() ?? 0
            workspaceSizes = Workspace.sizes(d, attentionScratch: attentionScratch, chunkRows: chunkRows, rank: rank)
        }
    }

    // MARK: - Public entry points

    /// Forward and backward of one batch: ACCUMULATES the adapters' gradients of
    /// `lossScale * sum of token losses` (default scale 1 / target count: the mean).
    /// - Parameter dropoutSeed: seeds the LoRA dropout masks of this step.
    /// - Returns: the mean loss over the batch's targets (0 when there are none).
    @discardableResult
    public func forwardBackward(_ batch: TokenBatch, lossScale: Float? = nil, dropoutSeed: UInt64 = 0) -> Float {
        forwardBackward(batch, lossScale: lossScale, dropoutSeed: dropoutSeed) { _, _ in true }!
    }

    /// `forwardBackward` that can be stopped part-way (a long step, a Ctrl-C): `proceed(done,
    /// total)` is asked after each layer's forward and each layer's backward (`total` = 2 x layers)
    /// and the pass ends as soon as it answers false, returning nil. The adapters' gradients then
    /// hold part of this batch's: zero them before the next step.
    public func forwardBackward(_ batch: TokenBatch, lossScale: Float? = nil, dropoutSeed: UInt64 = 0,
                                proceed: (_ done: Int, _ total: Int) -> Bool) -> Float? {
        let count = batch.targetCount
        guard count > 0 else { return 0 }
        let scale = lossScale ?? 1 / Float(count)
        let context = Context(batch: batch, training: true, dropoutSeed: dropoutSeed)
        guard forwardToFinalNorm(context, proceed: proceed) else { return nil }
        let total = headAndLoss(context, dLogitScale: scale)
        // x_final -> model.norm -> lm_head: dResidual = d(norm) / d x_final
        work.dResidual.update(repeating: 0, count: dims.N * dims.C)
        rmsNormBackward(work.dResidual, work.dNorm, inputs[dims.L], weights.finalNorm, work.finalRstd, rows: dims.N, dim: dims.C)
        for l in stride(from: dims.L - 1, through: 0, by: -1) {
            if options.gradientCheckpointing { forwardLayer(l, context, recompute: true) }
            backwardLayer(l, context)
            layerDone?(l)
            guard proceed(2 * dims.L - l, 2 * dims.L) else { return nil }
        }
        return Float(total / Double(count))
    }

    /// The mean loss over the batch's targets, without gradients or dropout (evaluation).
    public func loss(_ batch: TokenBatch) -> Float {
        let count = batch.targetCount
        guard count > 0 else { return 0 }
        let context = Context(batch: batch, training: false, dropoutSeed: 0)
        forwardToFinalNorm(context)
        return Float(headAndLoss(context, dLogitScale: nil) / Double(count))
    }

    /// The logits of rows `rows` (default all N) of the flattened batch into `out` (rows.count x V
    /// floats): for tests and generation.
    public func logits(_ batch: TokenBatch, rows: Range<Int>? = nil, into out: UnsafeMutablePointer<Float>) {
        let rows = rows ?? 0..<dims.N
        precondition(rows.lowerBound >= 0 && rows.upperBound <= dims.N)
        forwardToFinalNorm(Context(batch: batch, training: false, dropoutSeed: 0))
        frozenMatmulForward(out, work.finalNorm + rows.lowerBound * dims.C, weights.lmHead, rows: rows.count, scratch: tiles)
    }

    // MARK: - Forward

    private struct Context {
        let batch: TokenBatch
        let training: Bool
        let dropoutSeed: UInt64
    }

    private func checkShape(_ batch: TokenBatch) {
        precondition(batch.batch == dims.B && batch.seqLen == dims.T, "the model is laid out for \(dims.B)x\(dims.T) batches")
    }

    /// Embedding, every layer, then model.norm into work.finalNorm (and work.finalRstd); false
    /// when `proceed` (asked after each layer) stopped it.
    @discardableResult
    private func forwardToFinalNorm(_ context: Context, proceed: (_ done: Int, _ total: Int) -> Bool = { _, _ in true }) -> Bool {
        embed(context.batch)
        for l in 0..<dims.L {
            forwardLayer(l, context)
            layerDone?(l)
            guard proceed(l + 1, 2 * dims.L) else { return false }
        }
        rmsNormForward(work.finalNorm, work.finalRstd, inputs[dims.L], weights.finalNorm, rows: dims.N, dim: dims.C, eps: eps)
        return true
    }

    /// Layer l's saved activations, its input pointing at the residual stream entering it.
    private func activations(_ l: Int) -> LayerActivations {
        var a = layers[options.gradientCheckpointing ? 0 : l]
        a.input = inputs[l]
        return a
    }

    /// inputs[0] = embedding rows of the tokens (frozen: no backward).
    private func embed(_ batch: TokenBatch) {
        checkShape(batch)
        let V = dims.V, C = dims.C
        precondition(batch.tokens.allSatisfy { $0 >= 0 && Int($0) < V }, "token id outside the vocabulary of \(V)")
        let out = UnsafeSendable(inputs[0]), embedding = weights.embedding
        batch.tokens.withUnsafeBufferPointer { tokens in
            let ids = UnsafeSendable(tokens.baseAddress!)
            parallelChunks(count: dims.N, minimumChunk: 64) { range in
                for n in range {
                    let id = Int(ids.raw[n])
                    embedding.decodeRows(id..<id + 1, into: out.raw + n * C)
                }
            }
        }
    }

    private func adapterContext(_ context: Context, layer: Int, projection: Projection) -> AdapterContext {
        // A distinct, reproducible dropout stream per (step, layer, projection).
        let stream = UInt64(layer * Projection.allCases.count + Projection.allCases.firstIndex(of: projection)!)
        return AdapterContext(scratch: work.adapter1, scratch2: work.adapter2,
                              dropoutSeed: context.dropoutSeed &* 0x9E37_79B9_7F4A_7C15 &+ stream &* 0xD1B5_4A32_D192_ED03,
                              training: context.training)
    }

    /// y = x W^T + bias + adapter(x) for one projection of layer l; x (N, in), y (N, out).
    private func project(_ p: Projection, layer l: Int, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                         _ context: Context) {
        let w = weights.layers[l]
        frozenMatmulForward(y, x, w[p], rows: dims.N, scratch: tiles)
        if let bias = w.biases[p] { addRowBias(y, bias, rows: dims.N, cols: w[p].rows) }
        if let adapter = adapters.adapters[l][p] {
            adapter.forward(y, x, saved: activations(l).saved[p]!, rows: dims.N,
                            context: adapterContext(context, layer: l, projection: p))
        }
    }

    /// The layer's forward into its activation set. With `recompute` (checkpointing, in the
    /// backward) it stops before down_proj, whose output the backward does not need (the backward
    /// recomputes its input and its adapter's saved values).
    private func forwardLayer(_ l: Int, _ context: Context, recompute: Bool = false) {
        let d = dims, w = weights.layers[l], a = activations(l)
        let output = inputs[l + 1]
        let batch = context.batch
        rmsNormForward(a.ln1, a.rstd1, a.input, w.attentionNorm, rows: d.N, dim: d.C, eps: eps)
        project(.q, layer: l, a.q, a.ln1, context)
        project(.k, layer: l, a.k, a.ln1, context)
        project(.v, layer: l, a.v, a.ln1, context)
        batch.positions.withUnsafeBufferPointer { positions in
            ropeForward(a.q, positions.baseAddress!, ropeCos, ropeSin, rows: d.N, heads: d.H, headDim: d.D, maxPositions: d.T)
            ropeForward(a.k, positions.baseAddress!, ropeCos, ropeSin, rows: d.N, heads: d.Hkv, headDim: d.D, maxPositions: d.T)
        }
        batch.segmentStarts.withUnsafeBufferPointer { starts in
            attentionForward(a.att, a.lse, a.q, a.k, a.v, starts.baseAddress!, work.attention,
                             batch: d.B, seqLen: d.T, heads: d.H, kvHeads: d.Hkv, headDim: d.D)
        }
        project(.o, layer: l, a.mid, a.att, context)
        addInPlace(a.mid, a.input, count: d.N * d.C)
        rmsNormForward(a.ln2, a.rstd2, a.mid, w.mlpNorm, rows: d.N, dim: d.C, eps: eps)
        project(.gate, layer: l, a.gate, a.ln2, context)
        project(.up, layer: l, a.up, a.ln2, context)
        if recompute { return }
        swigluForward(work.hidden, a.gate, a.up, count: d.N * d.F)
        project(.down, layer: l, output, work.hidden, context)
        addInPlace(output, a.mid, count: d.N * d.C)
    }

    /// The lm_head and cross entropy over work.finalNorm, in chunks of rows. In training
    /// (`dLogitScale` set) each chunk's logits become dLogits and work.dNorm gets d(loss)/d(norm output).
    /// - Returns: the sum of the token losses.
    private func headAndLoss(_ context: Context, dLogitScale: Float?) -> Double {
        let d = dims
        var total: Double = 0
        context.batch.targets.withUnsafeBufferPointer { targets in
            for r0 in stride(from: 0, to: d.N, by: chunkRows) {
                let rows = min(chunkRows, d.N - r0)
                frozenMatmulForward(work.logits, work.finalNorm + r0 * d.C, weights.lmHead, rows: rows, scratch: tiles)
                if let scale = dLogitScale {
                    crossEntropyForwardBackward(work.logits, work.losses, targets.baseAddress! + r0, rows: rows, vocab: d.V, dLogitScale: scale)
                    // logits = norm W^T  =>  dNorm = dLogits W
                    frozenMatmulBackward(work.dNorm + r0 * d.C, work.logits, weights.lmHead, rows: rows, scratch: tiles)
                } else {
                    crossEntropyForward(work.losses, work.logits, targets.baseAddress! + r0, rows: rows, vocab: d.V)
                }
                for i in 0..<rows { total += Double(work.losses[i]) }
            }
        }
        return total
    }

    // MARK: - Backward

    /// dx (=, or += when `accumulate`) dy W for one projection, plus its adapter's gradients.
    /// Without `inputGradient` only the adapter's parameter gradients are wanted: the frozen
    /// product is skipped and dx is left meaningless.
    private func projectBackward(_ p: Projection, layer l: Int, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                                 x: UnsafePointer<Float>, accumulate: Bool, inputGradient: Bool = true, _ context: Context) {
        if inputGradient {
            frozenMatmulBackward(dx, dy, weights.layers[l][p], rows: dims.N, scratch: tiles, accumulate: accumulate)
        }
        if let adapter = adapters.adapters[l][p] {
            adapter.backward(dx, dy, x, saved: activations(l).saved[p]!, rows: dims.N,
                             context: adapterContext(context, layer: l, projection: p))
        }
    }

    /// Given work.dResidual = d loss / d(layer output), replaces it by d loss / d(layer input) and
    /// accumulates the layer's adapter gradients.
    private func backwardLayer(_ l: Int, _ context: Context) {
        let d = dims, w = weights.layers[l], a = activations(l)
        let batch = context.batch
        let dRes = work.dResidual
        // output = mid + down(hidden), hidden = swiglu(gate, up): dHidden = dRes W_down (+ adapter)
        swigluForward(work.hidden, a.gate, a.up, count: d.N * d.F)
        if options.gradientCheckpointing, let adapter = adapters.adapters[l][.down] {
            adapter.recomputeSaved(work.hidden, saved: a.saved[.down]!, rows: d.N, context: adapterContext(context, layer: l, projection: .down))
        }
        projectBackward(.down, layer: l, dx: work.dHidden, dy: dRes, x: work.hidden, accumulate: false, context)
        // gate and up become dGate and dUp in place
        swigluBackward(a.gate, a.up, work.dHidden, a.gate, a.up, count: d.N * d.F)
        // gate = ln2 Wg^T, up = ln2 Wu^T: dNorm = dGate Wg + dUp Wu
        projectBackward(.gate, layer: l, dx: work.dNorm, dy: a.gate, x: a.ln2, accumulate: false, context)
        projectBackward(.up, layer: l, dx: work.dNorm, dy: a.up, x: a.ln2, accumulate: true, context)
        // ln2 = rmsnorm(mid): dRes (now d mid, the residual path) += rmsnorm'(dNorm)
        rmsNormBackward(dRes, work.dNorm, a.mid, w.mlpNorm, a.rstd2, rows: d.N, dim: d.C)
        // mid = input + o_proj(att): dAtt = dMid W_o
        projectBackward(.o, layer: l, dx: work.dAtt, dy: dRes, x: a.att, accumulate: false, context)
        // att = attention(q, k, v)
        batch.segmentStarts.withUnsafeBufferPointer { starts in
            attentionBackward(work.dq, work.dk, work.dv, work.dAtt, a.att, a.lse, a.q, a.k, a.v, starts.baseAddress!, work.attention,
                              batch: d.B, seqLen: d.T, heads: d.H, kvHeads: d.Hkv, headDim: d.D)
        }
        // q = rope(ln1 Wq^T), k = rope(ln1 Wk^T)
        batch.positions.withUnsafeBufferPointer { positions in
            ropeBackward(work.dq, positions.baseAddress!, ropeCos, ropeSin, rows: d.N, heads: d.H, headDim: d.D, maxPositions: d.T)
            ropeBackward(work.dk, positions.baseAddress!, ropeCos, ropeSin, rows: d.N, heads: d.Hkv, headDim: d.D, maxPositions: d.T)
        }
        // The first layer's input is the frozen embedding: no gradient flows further.
        let inputGradient = l > 0
        projectBackward(.q, layer: l, dx: work.dNorm, dy: work.dq, x: a.ln1, accumulate: false, inputGradient: inputGradient, context)
        projectBackward(.k, layer: l, dx: work.dNorm, dy: work.dk, x: a.ln1, accumulate: true, inputGradient: inputGradient, context)
        projectBackward(.v, layer: l, dx: work.dNorm, dy: work.dv, x: a.ln1, accumulate: true, inputGradient: inputGradient, context)
        // ln1 = rmsnorm(input): dRes (now d input) += rmsnorm'(dNorm)
        if inputGradient { rmsNormBackward(dRes, work.dNorm, a.input, w.attentionNorm, a.rstd1, rows: d.N, dim: d.C) }
    }
}
