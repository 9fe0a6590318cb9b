// Rebuilds Hugging Face tokenizer.json / tokenizer_config.json from a GGUF's tokenizer metadata,
// mirroring transformers' GGUF converter (transformers 5.23 integrations/gguf/gguf_tokenizer_mapping.py
// with GPT2Tokenizer / LlamaTokenizer). Byte-level BPE ("gpt2") and SentencePiece BPE ("llama") only;
// unigram ("t5"), Gemma and Phi-3 vocabularies are refused rather than rebuilt wrong.
import Foundation
import QLoRAIO

/// Writes the tokenizer a GGUF file describes in Hugging Face's format.
public enum GGUFTokenizerExport {
    /// `tokenizer.json` and `tokenizer_config.json` (UTF-8 JSON bytes) for `gguf`.
    ///
    /// - `tokenizer.ggml.model == "gpt2"`: BPE over GPT-2's byte alphabet; vocab from
    ///   `tokenizer.ggml.tokens` (a token outside the byte alphabet is re-spelled through it, as
    ///   transformers does), merges from `tokenizer.ggml.merges`. Pre-tokenizer: GPT-2's ByteLevel,
    ///   or for the `tokenizer.ggml.pre` values transformers knows (`llama-bpe`, `qwen2`, ...) a
    ///   Split on that vocabulary's regex followed by ByteLevel(use_regex: false).
    /// - `"llama"`: BPE with byte fallback, merges recovered from `tokenizer.ggml.scores` as
    ///   transformers' `generate_merges` does, Metaspace pre-tokenizer (prepend on the first
    ///   piece), Replace/ByteFallback/Fuse/Strip decoder. Deliberate difference: when the file sets
    ///   `tokenizer.ggml.add_space_prefix = false`, no "▁" is prepended (llama.cpp's behaviour;
    ///   transformers ignores the flag).
    ///
    /// Added tokens: every control token (type 3; for byte-level only those spelled in the byte
    /// alphabet) and the bos/eos/unk/pad tokens as special, every user-defined token (type 4) as
    /// non-special. The post-processor prepends bos / appends eos per
    /// `tokenizer.ggml.add_bos_token` / `add_eos_token` (default: true / false for "llama").
    /// - Throws: `GGUFError.unsupportedTokenizer` for other models, `.badMetadata` when a
    ///   required key is missing or of the wrong type.
    public static func files(from gguf: GGUFFile) throws(GGUFError) -> (tokenizerJSON: [UInt8], tokenizerConfigJSON: [UInt8]) {
        let path = gguf.path
        guard let model = gguf.string("tokenizer.ggml.model") else {
            throw .badMetadata(path: path, key: "tokenizer.ggml.model", reason: "missing or not a string, so the file has no tokenizer")
        }
        guard let tokens = gguf.stringArray("tokenizer.ggml.tokens"), !tokens.isEmpty else {
            throw .badMetadata(path: path, key: "tokenizer.ggml.tokens", reason: "missing, empty or not an array of strings")
        }
        let tokenTypes = try optionalIntArray(gguf, "tokenizer.ggml.token_type", count: tokens.count)
        let architecture = gguf.architecture ?? ""

        var tokenizer: [String: Any]
        var vocab: [String: Int]
        var addBOS: Bool
        switch model {
        case "gpt2":
            (tokenizer, vocab) = try byteLevel(gguf, tokens: tokens)
            addBOS = gguf.bool("tokenizer.ggml.add_bos_token") ?? false
        case "llama" where !["gemma", "gemma2", "gemma3", "phi3"].contains(architecture):
            (tokenizer, vocab) = try sentencePiece(gguf, tokens: tokens)
            addBOS = gguf.bool("tokenizer.ggml.add_bos_token") ?? true
        default:
            throw .unsupportedTokenizer(path: path, model: model == "llama" ? "llama' for architecture '\(architecture)" : model)
        }
        var addEOS = gguf.bool("tokenizer.ggml.add_eos_token") ?? false

        // Special tokens named by id (transformers: tokens[id]; an id outside the vocab is an error there).
        var special: [(name: String, token: String)] = []
        for (name, key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                            ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")] {
            guard let value = gguf.value("tokenizer.ggml.\(key)") else { continue }
            guard let id = value.intValue, tokens.indices.contains(id) else {
                throw .badMetadata(path: path, key: "tokenizer.ggml.\(key)", reason: "\(value) is not a token id below \(tokens.count)")
            }
            special.append((name, tokens[id]))
        }
        let bos = special.first { $0.name == "bos_token" }?.token
        let eos = special.first { $0.name == "eos_token" }?.token
        if bos == nil { addBOS = false }
        if eos == nil { addEOS = false }

        // Added tokens, by id, as tokenizers serializes them.
        let byteAlphabet = model == "gpt2" ? Set(ByteLevelAlphabet.characters) : nil
        var added: [Int: (content: String, special: Bool)] = [:]
        if let tokenTypes {
            for (index, token) in tokens.enumerated() where tokenTypes[index] == 4 {
                if let id = vocab[token] { added[id] = (token, false) }
            }
            for (index, token) in tokens.enumerated() where tokenTypes[index] == 3 {
                if let alphabet = byteAlphabet, !token.unicodeScalars.allSatisfy(alphabet.contains) { continue }
                if let id = vocab[token] { added[id] = (token, true) }
            }
        }
        for (_, token) in special {
            if let id = vocab[token] { added[id] = (token, true) }
        }
        tokenizer["added_tokens"] = added.sorted { $0.key < $1.key }.map { id, entry -> [String: Any] in
            ["id": id, "content": entry.content, "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": entry.special]
        }
        tokenizer["post_processor"] = templateProcessing(bos: addBOS ? bos.map { ($0, vocab[$0] ?? 0) } : nil,
                                                         eos: addEOS ? eos.map { ($0, vocab[$0] ?? 0) } : nil)
        tokenizer["version"] = "1.0"
        tokenizer["truncation"] = NSNull()
        tokenizer["padding"] = NSNull()

        var config: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": addBOS,
            "add_eos_token": addEOS,
            "clean_up_tokenization_spaces": false,
        ]
        for (name, token) in special { config[name] = token }
        if let template = gguf.string("tokenizer.chat_template") { config["chat_template"] = template }
        if let context = gguf.int("\(architecture).context_length"), context > 0 { config["model_max_length"] = context }

        return (try json(tokenizer, path: path), try json(config, path: path))
    }

    // MARK: - Models

    /// GPT-2 byte-level BPE (transformers `byte_level_tokenizer`, `GPT2Tokenizer`, `set_split_regex`).
    private static func byteLevel(_ gguf: GGUFFile, tokens: [String]) throws(GGUFError) -> ([String: Any], [String: Int]) {
        let alphabet = Set(ByteLevelAlphabet.characters)
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(tokens.count)
        for (id, token) in tokens.enumerated() {
            let spelled = token.unicodeScalars.allSatisfy(alphabet.contains) ? token : ByteLevelAlphabet.spell(token)
            vocab[spelled] = id
        }
        let merges: [[String]]
        if gguf.value("tokenizer.ggml.merges") != nil {
            merges = try fileMerges(gguf)
        } else {
            // transformers `get_merges` derives them from the vocabulary as the file spells it.
            var raw: [String: Int] = [:]
            for (id, token) in tokens.enumerated() { raw[token] = id }
            merges = generateMerges(tokens: tokens, vocab: raw, scores: nil)
        }
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        var preTokenizer = byteLevel
        if let pre = gguf.string("tokenizer.ggml.pre"), let regex = splitRegexes[pre] {
            var noRegex = byteLevel
            noRegex["use_regex"] = false
            preTokenizer = ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false] as [String: Any],
                noRegex,
            ]]
        }
        let model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        ]
        let tokenizer: [String: Any] = [
            "model": model, "normalizer": NSNull(), "pre_tokenizer": preTokenizer,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
        ]
        return (tokenizer, vocab)
    }

    /// SentencePiece BPE with byte fallback (transformers `sentencepiece_tokenizer`, `LlamaTokenizer`).
    private static func sentencePiece(_ gguf: GGUFFile, tokens: [String]) throws(GGUFError) -> ([String: Any], [String: Int]) {
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(tokens.count)
        for (id, token) in tokens.enumerated() { vocab[token] = id }
        let merges: [[String]]
        if gguf.value("tokenizer.ggml.merges") != nil {
            merges = try fileMerges(gguf)
        } else {
            guard let scores = gguf.floatArray("tokenizer.ggml.scores"), scores.count == tokens.count else {
                throw .badMetadata(path: gguf.path, key: "tokenizer.ggml.scores",
                                   reason: "missing, not a float array, or not one score per token, and there are no merges")
            }
            merges = generateMerges(tokens: tokens, vocab: vocab, scores: scores)
        }
        let prefix = gguf.bool("tokenizer.ggml.add_space_prefix") ?? true
        var decoders: [[String: Any]] = [
            ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "],
            ["type": "ByteFallback"],
            ["type": "Fuse"],
        ]
        if prefix { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
        let model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
            "end_of_word_suffix": NSNull(), "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        ]
        let tokenizer: [String: Any] = [
            "model": model, "normalizer": NSNull(),
            "pre_tokenizer": ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prefix ? "first" : "never", "split": false],
            "decoder": ["type": "Sequence", "decoders": decoders],
        ]
        return (tokenizer, vocab)
    }

    // MARK: - Merges

    /// `tokenizer.ggml.merges` entries "left right", split at the first space after the first
    /// character (llama.cpp `llama_vocab::load`), as `[left, right]` pairs.
    private static func fileMerges(_ gguf: GGUFFile) throws(GGUFError) -> [[String]] {
        guard let lines = gguf.stringArray("tokenizer.ggml.merges") else {
            throw .badMetadata(path: gguf.path, key: "tokenizer.ggml.merges", reason: "not an array of strings")
        }
        var merges: [[String]] = []
        merges.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            let scalars = line.unicodeScalars
            guard !scalars.isEmpty, let space = scalars.dropFirst().firstIndex(of: " ") else {
                throw .badMetadata(path: gguf.path, key: "tokenizer.ggml.merges", reason: "entry \(index) '\(line)' is not two tokens separated by a space")
            }
            merges.append([String(scalars[..<space]), String(scalars[scalars.index(after: space)...])])
        }
        return merges
    }

    /// transformers `generate_merges(vocab, vocab_scores)`: every split of every token into two
    /// vocabulary pieces, ordered within a token by the pieces' ids, then overall (stable) by the
    /// token's score, the left length and the right length, all descending. Without scores the
    /// token id is the key, ascending. Lengths count Unicode scalars, as Python's `len`.
    static func generateMerges(tokens: [String], vocab: [String: Int], scores: [Double]?) -> [[String]] {
        // dict(zip(tokens, scores)): first occurrence fixes the order, the last one the score.
        var order: [String] = []
        var key: [String: Double] = [:]
        for (index, token) in tokens.enumerated() {
            if key.updateValue(scores.map { $0[index].isNaN ? -.infinity : $0[index] } ?? 0, forKey: token) == nil {
                order.append(token)
            }
        }
        if scores == nil { for (token, id) in vocab { key[token] = Double(id) } }

        struct Candidate { let left: String, right: String, key: Double, leftLength: Int, rightLength: Int }
        var candidates: [Candidate] = []
        for token in order {
            let scalars = Array(token.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [Candidate] = []
            var left = String.UnicodeScalarView()
            for split in 1..<scalars.count {
                left.append(scalars[split - 1])
                var right = String.UnicodeScalarView()
                right.append(contentsOf: scalars[split...])
                let l = String(left), r = String(right)
                if vocab[l] != nil, vocab[r] != nil {
                    local.append(Candidate(left: l, right: r, key: key[token] ?? 0, leftLength: split, rightLength: scalars.count - split))
                }
            }
            local.sort { (vocab[$0.left] ?? 0, vocab[$0.right] ?? 0) < (vocab[$1.left] ?? 0, vocab[$1.right] ?? 0) }
            candidates.append(contentsOf: local)
        }
        // Python's sorted(..., reverse=True) is stable: ties keep their order. Sort indices to get that.
        let descending = scores != nil
        let indices = candidates.indices.sorted { a, b in
            let x = candidates[a], y = candidates[b]
            let kx = (x.key, x.leftLength, x.rightLength), ky = (y.key, y.leftLength, y.rightLength)
            if kx == ky { return a < b }
            return descending ? kx > ky : kx < ky
        }
        return indices.map { [candidates[$0].left, candidates[$0].right] }
    }

    // MARK: - Pieces

    /// transformers `update_post_processor`: `[bos:0] $A:0 [eos:0]` and `... [bos:1] $B:1 [eos:1]`.
    private static func templateProcessing(bos: (String, Int)?, eos: (String, Int)?) -> [String: Any] {
        func specialToken(_ token: String, _ typeID: Int) -> [String: Any] { ["SpecialToken": ["id": token, "type_id": typeID]] }
        func sequence(_ id: String, _ typeID: Int) -> [String: Any] { ["Sequence": ["id": id, "type_id": typeID]] }
        var single: [[String: Any]] = []
        var pair: [[String: Any]] = []
        if let bos { single.append(specialToken(bos.0, 0)) }
        single.append(sequence("A", 0))
        if let eos { single.append(specialToken(eos.0, 0)) }
        pair = single
        if let bos { pair.append(specialToken(bos.0, 1)) }
        pair.append(sequence("B", 1))
        if let eos { pair.append(specialToken(eos.0, 1)) }
        var specials: [String: Any] = [:]
        for (token, id) in [bos, eos].compactMap({ $0 }) { specials[token] = ["id": token, "ids": [id], "tokens": [token]] }
        return ["type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials]
    }

    /// An integer array of exactly `count` entries, or nil when absent.
    private static func optionalIntArray(_ gguf: GGUFFile, _ key: String, count: Int) throws(GGUFError) -> [Int]? {
        guard gguf.value(key) != nil else { return nil }
        guard let values = gguf.intArray(key), values.count == count else {
            throw .badMetadata(path: gguf.path, key: key, reason: "not an integer array with one entry per token (\(count))")
        }
        return values
    }

    private static func json(_ object: [String: Any], path: String) throws(GGUFError) -> [UInt8] {
        do {
            return [UInt8](try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]))
        } catch {
            throw .badMetadata(path: path, key: "tokenizer.ggml.*", reason: "cannot be written as JSON (\(error))")
        }
    }

    /// transformers `GGUF_PRE_TOKENIZER_SPLITS`: `tokenizer.ggml.pre` -> the Split regex.
    static let splitRegexes: [String: String] = {
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let tekken = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"#
            + #"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"#
            + #"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let gpt4o = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#
            + #"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#
            + #"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        // transformers models/qwen2/tokenization_qwen2.py and models/qwen3_5/tokenization_qwen3_5.py PRETOKENIZE_REGEX.
        let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen35 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        var table: [String: String] = [:]
        for name in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                     "jina-v5-nano", "dbrx", "smaug-bpe"] { table[name] = llama3 }
        table["tekken"] = tekken
        for name in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] { table[name] = qwen2 }
        table["qwen35"] = qwen35
        for name in ["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"] { table[name] = gpt4o }
        return table
    }()
}

/// GPT-2's byte-to-character table (`bytes_to_unicode` in transformers / openai gpt-2 encoder.py):
/// printable Latin-1 bytes map to themselves, the other 68 to U+0100 and up, in byte order.
enum ByteLevelAlphabet {
    /// `characters[b]` is the character for byte `b`.
    static let characters: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next) ?? " "
                next += 1
            }
        }
        return table
    }()

    /// `text`'s UTF-8 bytes written in the byte alphabet.
    static func spell(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in text.utf8 { scalars.append(characters[Int(byte)]) }
        return String(scalars)
    }
}
