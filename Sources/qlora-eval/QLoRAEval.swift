// Evaluates a model with the training engine's forward: perplexity over token windows, and greedy
// continuations of token-id prompts. Token ids in, numbers out: tokenization is not its business.
import ArgumentParser
import Foundation
import QLoRAKernels
import QLoRAModel

@main
struct QLoRAEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qlora-eval",
        abstract: "Perplexity and greedy continuations of a Llama-family model (NF4 or float).",
        discussion: """
            Examples:
              qlora-eval perplexity --model out/smollm2-135m-nf4 --tokens text.i32 --window 512
              qlora-eval generate --model out/smollm2-135m-nf4 --prompt-ids 1,504,3 --max-new-tokens 32
            """,
        version: "0.1.0",
        subcommands: [Perplexity.self, Generate.self]
    )
}

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A model directory: `quantize` output or a Hugging Face F32/F16/BF16 checkpoint.")
    var model: String

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func load() throws -> LlamaWeights {
        try BLAS.load()
        return try LlamaWeights(directory: model)
    }

    /// The model without adapters, laid out for (batch, seqLen).
    func layout(_ weights: LlamaWeights, batch: Int, seqLen: Int) -> LlamaModel {
        let adapters = LoRAAdapters(shape: weights.shape, config: LoRAConfig(rank: 1, targets: []))
        return LlamaModel(weights: weights, adapters: adapters, options: ModelLayoutOptions(batch: batch, seqLen: seqLen))
    }
}

func emit(_ object: [String: Any], json: Bool, text: String) {
    if json {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        print(text)
    }
}

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "exp(mean next-token loss) over non-overlapping windows of a token file.",
        discussion: "Each window is scored from an empty context; its first token is not predicted; a short tail is dropped.")

    @OptionGroup var options: ModelOptions
    @Option(name: .long, help: "Token ids as little-endian int32, no header.")
    var tokens: String
    @Option(name: .long, help: "Tokens per window.")
    var window = 512
    @Option(name: .long, help: "Windows per forward pass.")
    var batch = 4

    func validate() throws {
        guard window >= 2 else { throw ValidationError("--window must be at least 2") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        let weights = try options.load()
        guard let data = FileManager.default.contents(atPath: tokens), data.count % 4 == 0 else {
            throw ValidationError("\(tokens): missing, or its size is not a multiple of 4 bytes (int32 token ids)")
        }
        let ids = data.withUnsafeBytes { raw in (0..<data.count / 4).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) } }
        let windows = ids.count / window
        guard windows > 0 else { throw ValidationError("\(tokens) holds \(ids.count) tokens, fewer than one window of \(window)") }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= weights.shape.vocabSize }) {
            throw ValidationError("\(tokens): token id \(bad) is outside the model's vocabulary of \(weights.shape.vocabSize)")
        }
        let rows = min(batch, windows)
        let model = options.layout(weights, batch: rows, seqLen: window)
        var total = 0.0
        let start = Date()
        for first in stride(from: 0, to: windows, by: rows) {
            var tokenRows: [Int32] = [], targets: [Int32] = []
            for row in 0..<rows {
                let w = first + row
                // Rows past the last window are padding with no targets.
                let slice = w < windows ? Array(ids[w * window ..< (w + 1) * window]) : [Int32](repeating: 0, count: window)
                tokenRows += slice
                targets += w < windows ? Array(slice.dropFirst()) + [TokenBatch.ignore] : [Int32](repeating: TokenBatch.ignore, count: window)
            }
            let scored = min(rows, windows - first)
            let batch = TokenBatch(batch: rows, seqLen: window, tokens: tokenRows, targets: targets)
            let mean = Double(model.loss(batch))
            total += mean * Double(scored * (window - 1))
            FileHandle.standardError.write(Data("\rwindows \(first + scored)/\(windows)".utf8))
        }
        FileHandle.standardError.write(Data("\n".utf8))
        let meanLoss = total / Double(windows * (window - 1))
        let seconds = Date().timeIntervalSince(start)
        emit(["ppl": exp(meanLoss), "mean_nll": meanLoss, "windows": windows, "window": window, "tokens": windows * window,
              "seconds": seconds, "tokens_per_s": Double(windows * window) / seconds],
             json: options.json,
             text: String(format: "perplexity %.4f (mean loss %.5f) over %d windows of %d tokens, %.1f s", exp(meanLoss), meanLoss, windows, window, seconds))
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Greedy continuation (argmax, lowest id on ties) of a prompt given as token ids.")

    @OptionGroup var options: ModelOptions
    @Option(name: .long, help: "Comma-separated prompt token ids.")
    var promptIds: String
    @Option(name: .long, help: "Tokens to generate (no stop token).")
    var maxNewTokens = 32

    func run() throws {
        let weights = try options.load()
        let prompt = try promptIds.split(separator: ",").map { text -> Int32 in
            guard let id = Int32(text.trimmingCharacters(in: .whitespaces)), id >= 0, Int(id) < weights.shape.vocabSize else {
                throw ValidationError("--prompt-ids: '\(text)' is not a token id below the vocabulary size \(weights.shape.vocabSize)")
            }
            return id
        }
        guard !prompt.isEmpty, maxNewTokens > 0 else { throw ValidationError("give at least one prompt id and --max-new-tokens >= 1") }
        // One layout for the final length; positions after the current end are padding, which
        // causal attention keeps from influencing earlier positions.
        let length = prompt.count + maxNewTokens, V = weights.shape.vocabSize
        let model = options.layout(weights, batch: 1, seqLen: length)
        var sequence = prompt, margins: [Float] = []
        var logits = [Float](repeating: 0, count: length * V)
        while sequence.count < length {
            let tokens = sequence + [Int32](repeating: 0, count: length - sequence.count)
            model.logits(TokenBatch(batch: 1, seqLen: length, tokens: tokens, targets: [Int32](repeating: TokenBatch.ignore, count: length)), into: &logits)
            let row = logits[(sequence.count - 1) * V ..< sequence.count * V]
            var best = row.startIndex, second = -Float.infinity
            for i in row.indices where row[i] > row[best] { best = i }
            for i in row.indices where i != best { second = max(second, row[i]) }
            margins.append(row[best] - second)
            sequence.append(Int32(best - row.startIndex))
        }
        let generated = Array(sequence.dropFirst(prompt.count))
        emit(["prompt_ids": prompt.map(Int.init), "new_ids": generated.map(Int.init), "margins": margins.map(Double.init)],
             json: options.json, text: generated.map(String.init).joined(separator: ","))
    }
}
