// A minimal llama GGUF that converts completely: one layer, hidden and FFN size 64, an 8-token
// SentencePiece-style vocabulary, every tensor F32 with a constant byte pattern. Not a useful model.
import QLoRAIO
import _TestSupport

/// GGUF bytes of the tiny llama; `nanTensor` (a GGUF name) is filled with NaN instead.
func tinyLlamaGGUF(nanTensor: String? = nil) -> [UInt8] {
    var builder = GGUFBuilder()
    builder.metadata = [
        ("general.architecture", .string("llama")), ("llama.embedding_length", .uint32(64)),
        ("llama.attention.head_count", .uint32(1)), ("llama.feed_forward_length", .uint32(64)),
        ("llama.block_count", .uint32(1)), ("tokenizer.ggml.model", .string("llama")),
        ("tokenizer.ggml.tokens", .array(.string, ["<unk>", "<s>", "</s>", "a", "b", "c", "ab", "abc"].map { .string($0) })),
        ("tokenizer.ggml.scores", .array(.float32, (0..<8).map { .float32(-Float($0)) })),
    ]
    let shapes: [(String, [UInt64])] = [
        ("token_embd.weight", [64, 8]), ("blk.0.attn_norm.weight", [64]), ("blk.0.attn_q.weight", [64, 64]),
        ("blk.0.attn_k.weight", [64, 64]), ("blk.0.attn_v.weight", [64, 64]), ("blk.0.attn_output.weight", [64, 64]),
        ("blk.0.ffn_norm.weight", [64]), ("blk.0.ffn_gate.weight", [64, 64]), ("blk.0.ffn_up.weight", [64, 64]),
        ("blk.0.ffn_down.weight", [64, 64]), ("output_norm.weight", [64]),
    ]
    for (name, dimensions) in shapes {
        // 0x3C3C3C3C is 0.0115 as Float32; 0xFFFFFFFF is a NaN.
        builder.addTensor(name, dimensions, type: .f32, fill: name == nanTensor ? 0xFF : 0x3C)
    }
    return builder.build()
}
