// Greedy answers to a few prompts before and after training, to show what the adapter changed.
// A forward-only model of one short row (no KV cache: each new token reruns the row, which is
// cheap at this length) shares the frozen weights and the adapters with the training model.
import QLoRAModel

final class Sampler {
    let model: LlamaModel
    private let data: TrainingData
    private let maxTokens: Int
    private var logits: [Float]

    /// Room for the prompt and the answer.
    static func seqLen(config: TrainConfig, data: TrainingData) -> Int {
        let longest = config.samplePrompts.map { data.promptTokens($0).count }.max() ?? 0
        return min(config.seqLen, longest + config.sampleTokens)
    }

    /// The layout of the sampler's model (one place for the planner and `init`).
    static func layout(seqLen: Int, vocabularySize: Int) -> ModelLayoutOptions {
        ModelLayoutOptions(batch: 1, seqLen: seqLen, gradientCheckpointing: true, logitsChunkBytes: 4 * vocabularySize, tileCapacity: 1 << 18)
    }

    init(weights: LlamaWeights, adapters: LoRAAdapters, seqLen: Int, data: TrainingData, maxTokens: Int) {
        model = LlamaModel(weights: weights, adapters: adapters, options: Self.layout(seqLen: seqLen, vocabularySize: weights.shape.vocabSize))
        self.data = data
        self.maxTokens = maxTokens
        logits = [Float](repeating: 0, count: weights.shape.vocabSize)
    }

    /// The greedy continuation of `prompt` (chat-templated when the model has a template), up to
    /// the end-of-turn token, `maxTokens`, the row's end, or `proceed(tokens so far)` answering
    /// false (asked before each token; nil is returned then).
    func answer(_ prompt: String, proceed: (Int) -> Bool = { _ in true }) -> String? {
        let T = model.dims.T, V = model.dims.V
        var tokens = data.promptTokens(prompt)
        guard !tokens.isEmpty, tokens.count < T else { return "(the prompt is empty or longer than the sampler's \(T) tokens)" }
        let start = tokens.count
        while tokens.count < T && tokens.count - start < maxTokens {
            guard proceed(tokens.count - start) else { return nil }
            let row = tokens + [Int32](repeating: 0, count: T - tokens.count)
            let batch = TokenBatch(batch: 1, seqLen: T, tokens: row, targets: [Int32](repeating: TokenBatch.ignore, count: T))
            logits.withUnsafeMutableBufferPointer { model.logits(batch, rows: tokens.count - 1..<tokens.count, into: $0.baseAddress!) }
            var best = 0
            for v in 1..<V where logits[v] > logits[best] { best = v }
            if data.stopTokens.contains(Int32(best)) { break }
            tokens.append(Int32(best))
        }
        return data.decode(Array(tokens[start...]))
    }
}
