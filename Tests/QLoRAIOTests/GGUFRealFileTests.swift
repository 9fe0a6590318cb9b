// Checks on a real model file, skipped unless QLORA_SMOLLM2_GGUF names SmolLM2-135M-Instruct.Q4_1.gguf
// (see tools/reference/check_gguf_tokenizer.py and check_gguf_dequant.py for how it is fetched).
// QLORA_TOKENIZER_OUT=dir writes our exported tokenizer files there; QLORA_DEQUANT_OUT=dir writes
// dequantized tensors there, for the Python scripts to compare with transformers and gguf-py;
// QLORA_EXTRA_GGUF=path also exports that file's tokenizer (into <QLORA_TOKENIZER_OUT>/extra).
import Foundation
import QLoRAIO
import QLoRATokenizer
import Testing
import _TestSupport

private let environment = ProcessInfo.processInfo.environment

@Test(.enabled(if: environment["QLORA_SMOLLM2_GGUF"] != nil, "set QLORA_SMOLLM2_GGUF to the SmolLM2 GGUF path"))
func ggufSmolLM2RealFile() throws {
    let path = try #require(environment["QLORA_SMOLLM2_GGUF"])
    let gguf = try GGUFFile(path: path)
    #expect(gguf.architecture == "llama" && gguf.version == 3)
    #expect(gguf.tensors.count == 272)
    var types: [GGMLType: Int] = [:]
    for t in gguf.tensors { types[t.type, default: 0] += 1 }
    #expect(types == [.q4_1: 210, .f32: 61, .q8_0: 1])
    let embedding = try #require(gguf.tensor(named: "token_embd.weight"))
    #expect(embedding.dimensions == [576, 49152] && embedding.type == .q8_0)
    #expect(gguf.stringArray("tokenizer.ggml.tokens")?.count == 49152)

    let fm = FileManager.default
    if let out = environment["QLORA_TOKENIZER_OUT"] {
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        // The real file, and the two fixture files, each into its own folder.
        let fixtures = fixturesDirectory("gguf")
        let sources = [("smollm2", path), ("tiny-llama", fixtures.appendingPathComponent("tiny-llama.gguf").path),
                       ("tiny-gpt2", fixtures.appendingPathComponent("tiny-gpt2.gguf").path)]
            + (environment["QLORA_EXTRA_GGUF"].map { [("extra", $0)] } ?? [])
        for (stem, source) in sources {
            let (tokenizer, config) = try GGUFTokenizerExport.files(from: try GGUFFile(path: source))
            let dir = (out as NSString).appendingPathComponent(stem)
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(tokenizer).write(to: URL(fileURLWithPath: dir).appendingPathComponent("tokenizer.json"))
            try Data(config).write(to: URL(fileURLWithPath: dir).appendingPathComponent("tokenizer_config.json"))
        }
    }

    if let out = environment["QLORA_DEQUANT_OUT"] {
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let names = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight",
                     "blk.17.ffn_gate.weight", "blk.29.attn_output.weight", "blk.29.attn_norm.weight", "output_norm.weight"]
        for name in names {
            let t = try #require(gguf.tensor(named: name), "\(name) missing")
            try gguf.requireDequantizable(t)
            var values = [Float](repeating: .nan, count: t.elementCount)
            // In row chunks, as the converter will read it.
            let chunk = 4096
            values.withUnsafeMutableBufferPointer { buffer in
                var row = 0
                while row < t.rowCount {
                    let n = min(chunk, t.rowCount - row)
                    gguf.dequantizeRows(of: t, firstRow: row, rowCount: n, into: buffer.baseAddress! + row * t.rowLength)
                    row += n
                }
            }
            let data = values.withUnsafeBytes { Data($0) }
            try data.write(to: URL(fileURLWithPath: out).appendingPathComponent("\(name).f32"))
        }
    }
}
