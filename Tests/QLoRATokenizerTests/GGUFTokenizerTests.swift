// GGUFTokenizerExport against what transformers' GGUF converter makes of the same files
// (fixtures from tools/reference/make_gguf_fixtures.py), and structure checks on a tiny GGUF built here.
import Foundation
import QLoRAIO
import QLoRATokenizer
import Testing
import _TestSupport

private let fixtureDir = fixturesDirectory("gguf")

private func jsonObject(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

private func jsonFile(_ name: String) throws -> [String: Any] {
    try jsonObject([UInt8](try Data(contentsOf: fixtureDir.appendingPathComponent(name))))
}

/// Canonical text of a JSON value (sorted keys), for equality checks of nested structures.
private func canonical(_ value: Any?) -> String {
    guard let value, !(value is NSNull) else { return "null" }
    guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) else { return "<invalid>" }
    return String(decoding: data, as: UTF8.self)
}

@Test(arguments: ["tiny-llama", "tiny-gpt2"])
func ggufTokenizerMatchesTransformers(stem: String) throws {
    let gguf = try GGUFFile(path: fixtureDir.appendingPathComponent("\(stem).gguf").path)
    let (tokenizerBytes, configBytes) = try GGUFTokenizerExport.files(from: gguf)
    let ours = try jsonObject(tokenizerBytes)
    let theirs = try jsonFile("\(stem).tokenizer.json")

    for key in ["normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens", "truncation", "padding"] {
        #expect(canonical(ours[key]) == canonical(theirs[key]), "\(stem) \(key):\n ours   \(canonical(ours[key]))\n theirs \(canonical(theirs[key]))")
    }
    let ourModel = try #require(ours["model"] as? [String: Any])
    let theirModel = try #require(theirs["model"] as? [String: Any])
    #expect(Set(ourModel.keys) == Set(theirModel.keys))
    for key in theirModel.keys where key != "vocab" && key != "merges" {
        #expect(canonical(ourModel[key]) == canonical(theirModel[key]), "\(stem) model.\(key)")
    }
    let ourVocab = try #require(ourModel["vocab"] as? [String: Int])
    let theirVocab = try #require(theirModel["vocab"] as? [String: Int])
    #expect(ourVocab == theirVocab)
    let ourMerges = try #require(ourModel["merges"] as? [[String]])
    let theirMerges = try #require(theirModel["merges"] as? [[String]])
    #expect(ourMerges.count == theirMerges.count)
    let firstDifference = zip(ourMerges, theirMerges).enumerated().first { $0.element.0 != $0.element.1 }
    #expect(firstDifference == nil, "\(stem): merge \(firstDifference.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")")

    let config = try jsonObject(configBytes)
    let theirConfig = try jsonFile("\(stem).tokenizer_config.json")
    for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
        #expect(canonical(config[key]) == canonical(theirConfig[key]), "\(stem) \(key)")
    }
    #expect(config["tokenizer_class"] as? String == "PreTrainedTokenizerFast")
    #expect(config["chat_template"] as? String == gguf.string("tokenizer.chat_template"))
    #expect(config["model_max_length"] as? Int == gguf.int("\(gguf.architecture ?? "").context_length"))
    #expect(config["add_bos_token"] as? Bool == (stem == "tiny-llama"))
}

/// A byte-level vocabulary over "a", "b", "c" and " " (Ġ) with two merges, two control tokens,
/// a user-defined token and a chat template.
private func tinyByteLevel() -> GGUFBuilder {
    var b = GGUFBuilder()
    let tokens = ["<|endoftext|>", "a", "b", "c", "Ġ", "ab", "Ġab", "<|im_end|>", "<tool>", "x y"]
    b.metadata = [
        ("general.architecture", .string("llama")),
        ("llama.context_length", .uint32(8192)),
        ("tokenizer.ggml.model", .string("gpt2")),
        ("tokenizer.ggml.pre", .string("llama-bpe")),
        ("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) })),
        ("tokenizer.ggml.token_type", .array(.int32, [3, 1, 1, 1, 1, 1, 1, 3, 4, 1].map { .int32($0) })),
        ("tokenizer.ggml.merges", .array(.string, [.string("a b"), .string("Ġ ab")])),
        ("tokenizer.ggml.bos_token_id", .uint32(0)),
        ("tokenizer.ggml.eos_token_id", .uint32(7)),
        ("tokenizer.ggml.add_bos_token", .bool(true)),
        ("tokenizer.chat_template", .string("{{ messages[0]['content'] }}<|im_end|>")),
    ]
    return b
}

@Test func ggufTokenizerByteLevelStructure() throws {
    let path = temporaryPath()
    defer { unlink(path) }
    writeBytes(tinyByteLevel().build(), to: path)
    let gguf = try GGUFFile(path: path)
    let (tokenizerBytes, configBytes) = try GGUFTokenizerExport.files(from: gguf)
    let tokenizer = try jsonObject(tokenizerBytes)
    let model = try #require(tokenizer["model"] as? [String: Any])
    #expect(model["type"] as? String == "BPE")
    let vocab = try #require(model["vocab"] as? [String: Int])
    #expect(vocab.count == 10)
    #expect(vocab["Ġab"] == 6 && vocab["xĠy"] == 9 && vocab["x y"] == nil)  // re-spelled through the byte alphabet
    #expect(model["merges"] as? [[String]] == [["a", "b"], ["Ġ", "ab"]])
    let added = try #require(tokenizer["added_tokens"] as? [[String: Any]])
    #expect(added.map { $0["id"] as? Int } == [0, 7, 8])
    #expect(added.map { $0["special"] as? Bool } == [true, true, false])
    #expect(added.map { $0["content"] as? String } == ["<|endoftext|>", "<|im_end|>", "<tool>"])
    let pre = try #require(tokenizer["pre_tokenizer"] as? [String: Any])
    #expect(pre["type"] as? String == "Sequence")
    #expect(canonical(pre).contains(#"\\p{N}{1,3}"#))  // llama-bpe's Llama-3 regex
    let post = canonical(tokenizer["post_processor"])
    #expect(post.contains(#""SpecialToken":{"id":"<|endoftext|>","type_id":0}"#))

    let config = try jsonObject(configBytes)
    #expect(config["chat_template"] as? String == "{{ messages[0]['content'] }}<|im_end|>")
    #expect(config["bos_token"] as? String == "<|endoftext|>" && config["eos_token"] as? String == "<|im_end|>")
    #expect(config["unk_token"] == nil && config["pad_token"] == nil)
    #expect(config["model_max_length"] as? Int == 8192 && config["add_bos_token"] as? Bool == true)
}

@Test func ggufTokenizerRejectsUnknownModelsAndBadMetadata() throws {
    let path = temporaryPath()
    defer { unlink(path) }
    var b = tinyByteLevel()
    b.metadata[2].value = .string("bert")
    writeBytes(b.build(), to: path)
    var gguf = try GGUFFile(path: path)
    #expect(throws: GGUFError.unsupportedTokenizer(path: path, model: "bert")) { try GGUFTokenizerExport.files(from: gguf) }
    #expect(GGUFError.unsupportedTokenizer(path: path, model: "bert").description.contains("'bert'"))

    b = tinyByteLevel()
    b.metadata[7].value = .uint32(99)  // bos id past the vocabulary
    writeBytes(b.build(), to: path)
    gguf = try GGUFFile(path: path)
    #expect(throws: GGUFError.self) { try GGUFTokenizerExport.files(from: gguf) }

    b = tinyByteLevel()
    b.metadata[6].value = .array(.string, [.string("ab")])  // a merge without a space
    writeBytes(b.build(), to: path)
    gguf = try GGUFFile(path: path)
    #expect(throws: GGUFError.self) { try GGUFTokenizerExport.files(from: gguf) }

    b = tinyByteLevel()
    b.metadata.remove(at: 4)  // no tokens
    writeBytes(b.build(), to: path)
    gguf = try GGUFFile(path: path)
    #expect(throws: GGUFError.self) { try GGUFTokenizerExport.files(from: gguf) }
}
