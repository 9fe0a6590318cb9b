// Seeded random weights in the shapes of a real architecture, for memory and speed profiling:
// normal(0, 0.02) linears and embeddings, norms of ones. Rows are generated independently (seeded by
// tensor and row), so any row range can be produced in any order and in parallel.
import Foundation
import QLoRAKernels
import QLoRAModel

public final class SyntheticSource: WeightSource {
    public let origin: String
    /// The config.json the architecture was read from, if one was given.
    public let inputPaths: [String]
    public let config: [String: Any]
    public let outputEncoding = FloatEncoding.bfloat16
    public let tensors: [SourceTensor]
    private let seed: UInt64
    private let tensorIndex: [String: Int]

    /// Architectures `--synthetic` knows by name, as Hugging Face config fields.
    nonisolated(unsafe) public static let presets: [String: [String: Any]] = [
        // The small shape of the training benchmarks (../shared/MACHINE.md): 58 M parameters.
        "llama-small": llama(hidden: 512, intermediate: 1376, layers: 8, heads: 8, kvHeads: 8, vocab: 32000),
        "llama-125m": llama(hidden: 768, intermediate: 2048, layers: 12, heads: 12, kvHeads: 12, vocab: 32000),
        "llama-1b": llama(hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, vocab: 128256, tied: true,
                          ropeTheta: 500000, extra: ["rope_scaling": ["rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192],
                                                      "max_position_embeddings": 131072]),
        "tinyllama-1.1b": llama(hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4, vocab: 32000),
        "llama-7b": llama(hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: 32, vocab: 32000),
        "llama-13b": llama(hidden: 5120, intermediate: 13824, layers: 40, heads: 40, kvHeads: 40, vocab: 32000),
        "llama-70b": llama(hidden: 8192, intermediate: 28672, layers: 80, heads: 64, kvHeads: 8, vocab: 32000),
    ]

    static func llama(hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int, tied: Bool = false,
                      ropeTheta: Double = 10000, extra: [String: Any] = [:]) -> [String: Any] {
        var config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kvHeads, "vocab_size": vocab, "tie_word_embeddings": tied, "rms_norm_eps": 1e-5,
            "rope_theta": ropeTheta, "max_position_embeddings": 4096, "hidden_act": "silu", "attention_bias": false,
            "mlp_bias": false, "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02, "torch_dtype": "bfloat16",
        ]
        config.merge(extra) { $1 }
        return config
    }

    /// - Parameter architecture: a preset name or the path of a config.json.
    public init(architecture: String, seed: UInt64) throws {
        if let preset = Self.presets[architecture] {
            config = preset
            inputPaths = []
        } else if architecture.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: architecture),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ConvertError.badConfig(path: architecture, detail: "cannot read a JSON object from this file")
            }
            var config = object
            config["torch_dtype"] = "bfloat16"
            self.config = config
            inputPaths = [architecture]
        } else {
            throw ConvertError.input(path: architecture, detail: "unknown synthetic architecture; use one of \(Self.presets.keys.sorted().joined(separator: ", ")) or a config.json path")
        }
        origin = "synthetic \(architecture) (seed \(seed))"
        self.seed = seed
        let shape = try ModelShape(config: config, path: architecture)
        tensors = shape.tensorShapes.map { [origin] in SourceTensor(name: $0.name, shape: $0.shape, sourceBytes: 0, file: origin) }
        var index: [String: Int] = [:]
        for (i, tensor) in tensors.enumerated() { index[tensor.name] = i }
        tensorIndex = index
    }

    public func read(_ tensor: SourceTensor, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let length = tensor.rowLength
        if tensor.shape.count == 1 {
            out.update(repeating: 1, count: rows.count * length)
            return
        }
        let tensorSeed = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(tensorIndex[tensor.name]!) &* 0xD1B5_4A32_D192_ED03
        let first = rows.lowerBound
        let destination = UnsafeSendable(out)
        parallelChunks(count: rows.count, minimumChunk: max(1, 16384 / length)) { chunk in
            for row in chunk {
                fillNormal(destination.raw + row * length, count: length, seed: tensorSeed &+ UInt64(first + row), std: 0.02)
            }
        }
        try roundToOutput(out, count: rows.count * length, tensor: tensor)
    }

    public func release(_ tensor: SourceTensor) {}

    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] { [] }
}
