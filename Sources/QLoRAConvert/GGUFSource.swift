// A llama.cpp GGUF file (architecture llama or qwen2) as a conversion source: ggml tensors renamed
// to Hugging Face names, dequantized to Float32, Q/K rows un-permuted for llama, and a config.json
// and tokenizer files rebuilt from the metadata.
import Foundation
import QLoRAIO
import QLoRATokenizer
import QLoRAModel
import QLoRAKernels

public final class GGUFSource: WeightSource {
    public let origin: String
    public var inputPaths: [String] { [origin] }
    public let config: [String: Any]
    public let outputEncoding: FloatEncoding
    public let tensors: [SourceTensor]
    private let gguf: GGUFFile
    /// HF name -> (GGUF tensor, heads for the llama Q/K row permutation or nil).
    private let mapping: [String: (info: GGUFTensorInfo, permuteHeads: Int?)]

    public static let supportedArchitectures = ["llama", "qwen2"]

    public init(path: String, encoding: FloatEncoding = .float16) throws {
        gguf = try GGUFFile(path: path)
        origin = path
        outputEncoding = encoding
        guard let arch = gguf.architecture else { throw ConvertError.badConfig(path: path, detail: "no general.architecture in the metadata") }
        guard Self.supportedArchitectures.contains(arch) else {
            throw ConvertError.unsupportedArchitecture(path: path, name: arch, supported: Self.supportedArchitectures)
        }
        let config = try Self.config(gguf, arch: arch, encoding: encoding)
        let shape = try ModelShape(config: config, path: path)
        self.config = config
        if gguf.tensor(named: "rope_freqs.weight") != nil {
            throw ConvertError.input(path: path, detail: "tensor 'rope_freqs.weight' (llama3 rope scaling factors) cannot be represented in config.json yet; convert the original Hugging Face checkpoint instead")
        }
        var mapping: [String: (GGUFTensorInfo, Int?)] = [:]
        var tensors: [SourceTensor] = []
        for (name, expected) in shape.tensorShapes {
            let ggufName = Self.ggufName(for: name)
            guard let info = gguf.tensor(named: ggufName) else { throw ConvertError.missingTensor(path: path, tensor: "\(ggufName) (\(name))") }
            try gguf.requireDequantizable(info)
            let found = Array(info.dimensions.reversed())
            guard found == expected else { throw ConvertError.shapeMismatch(path: path, tensor: ggufName, expected: expected, found: found) }
            var permute: Int?
            if arch == "llama" {
                if name.hasSuffix("q_proj.weight") { permute = shape.heads }
                if name.hasSuffix("k_proj.weight") { permute = shape.kvHeads }
            }
            mapping[name] = (info, permute)
            tensors.append(SourceTensor(name: name, shape: expected, sourceBytes: info.byteCount, file: path))
        }
        self.mapping = mapping
        self.tensors = tensors
    }

    /// llama.cpp's tensor name for a Hugging Face one (convert_hf_to_gguf.py's table).
    static func ggufName(for name: String) -> String {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let direct = fixed[name] { return direct }
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)  // model, layers, N, rest
        let layer = parts[2], rest = parts[3]
        let table = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                     "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                     "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                     "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                     "self_attn.v_proj.bias": "attn_v.bias", "mlp.gate_proj.weight": "ffn_gate.weight",
                     "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"]
        return "blk.\(layer).\(table[rest] ?? rest)"
    }

    /// A Hugging Face config.json for the GGUF's metadata.
    static func config(_ gguf: GGUFFile, arch: String, encoding: FloatEncoding) throws -> [String: Any] {
        func int(_ key: String) throws -> Int {
            guard let value = gguf.int("\(arch).\(key)") else { throw ConvertError.badConfig(path: gguf.path, detail: "metadata '\(arch).\(key)' is missing") }
            return value
        }
        let hidden = try int("embedding_length"), heads = try int("attention.head_count")
        let vocab = try gguf.stringArray("tokenizer.ggml.tokens")?.count ?? int("vocab_size")
        var config: [String: Any] = [
            "architectures": [arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"], "model_type": arch,
            "hidden_size": hidden, "intermediate_size": try int("feed_forward_length"),
            "num_hidden_layers": try int("block_count"), "num_attention_heads": heads,
            "num_key_value_heads": gguf.int("\(arch).attention.head_count_kv") ?? heads,
            "max_position_embeddings": gguf.int("\(arch).context_length") ?? 2048,
            "rms_norm_eps": gguf.float("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-6,
            "rope_theta": gguf.float("\(arch).rope.freq_base") ?? 10000.0,
            "vocab_size": vocab, "tie_word_embeddings": gguf.tensor(named: "output.weight") == nil,
            "hidden_act": "silu", "attention_bias": arch == "qwen2", "torch_dtype": encoding.rawValue,
        ]
        if let headDim = gguf.int("\(arch).attention.key_length"), headDim != hidden / heads { config["head_dim"] = headDim }
        if let bos = gguf.int("tokenizer.ggml.bos_token_id") { config["bos_token_id"] = bos }
        if let eos = gguf.int("tokenizer.ggml.eos_token_id") { config["eos_token_id"] = eos }
        if let pad = gguf.int("tokenizer.ggml.padding_token_id") { config["pad_token_id"] = pad }
        return config
    }

    public func read(_ tensor: SourceTensor, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let (info, permuteHeads) = mapping[tensor.name]!
        let length = tensor.rowLength
        if let heads = permuteHeads {
            // llama.cpp stores Q/K with each head's rows interleaved for adjacent-pair RoPE:
            // GGUF row h*D + 2i + j holds HF row h*D + j*D/2 + i (D = rows per head, j in {0, 1}).
            let perHead = tensor.rowCount / heads, half = perHead / 2
            for (k, row) in rows.enumerated() {
                let head = row / perHead, within = row % perHead
                let source = head * perHead + (within % half) * 2 + within / half
                gguf.dequantizeRows(of: info, firstRow: source, rowCount: 1, into: out + k * length)
            }
        } else {
            gguf.dequantizeRows(of: info, firstRow: rows.lowerBound, rowCount: rows.count, into: out)
        }
        try roundToOutput(out, count: rows.count * length, tensor: tensor)
    }

    public func release(_ tensor: SourceTensor) {
        let info = mapping[tensor.name]!.info
        gguf.file.release(offset: info.dataOffset, count: info.byteCount)
    }

    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] {
        let files = try GGUFTokenizerExport.files(from: gguf)
        var generation: [String: Any] = ["_from_model_config": true]
        generation["bos_token_id"] = config["bos_token_id"]
        generation["eos_token_id"] = config["eos_token_id"]
        return [("tokenizer.json", files.tokenizerJSON), ("tokenizer_config.json", files.tokenizerConfigJSON),
                ("generation_config.json", Array((PythonJSON.encode(generation) + "\n").utf8))]
    }
}
