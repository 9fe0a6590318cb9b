// A Hugging Face tokenizer.json reader and BPE tokenizer that gives the ids and text of the
// `tokenizers` library (0.23) for byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM2) and SentencePiece
// BPE with byte fallback (Llama-2). Leaves out WordPiece / Unigram / WordLevel models, Unicode
// normalizers, pair encoding, offsets, truncation and padding: such files are refused at load.
import Foundation
import QLoRAIO

/// Text <-> token ids as Hugging Face `tokenizers` computes them from a `tokenizer.json`.
///
/// Encoding: the text is split on added tokens (leftmost-longest; `normalized: false` ones on the
/// raw text, then `normalized: true` ones on each normalized piece), each remaining piece is
/// normalized, pre-tokenized into words and encoded by the BPE model (a cache per word and call);
/// with `addSpecialTokens` the post-processor's template adds its special tokens.
/// Decoding maps ids to tokens (unknown ids are dropped, special added tokens too when asked) and
/// runs the decoder chain.
///
/// Immutable after `init`, so one instance may be shared across threads.
public final class Tokenizer: Sendable {
    /// The file this tokenizer was read from.
    public let path: String
    let model: BPEModel
    /// Whether words go through GPT-2's byte-to-character alphabet before the model (ByteLevel).
    let byteLevel: Bool
    let normalizers: [NormalizerStep]
    let preTokenizers: [PreTokenizerStep]
    /// Added tokens matched on the raw text / on normalized pieces.
    let rawAddedTokens: AddedTokenMatcher
    let normalizedAddedTokens: AddedTokenMatcher
    /// TemplateProcessing `single` as ids around the sequence; empty when there is none.
    let prefixIds: [Int32]
    let suffixIds: [Int32]
    let decoders: [DecoderStep]?
    /// id -> token content (added tokens override the model vocabulary); nil for unused ids.
    let idToToken: [[UInt8]?]
    /// Ids of added tokens with `special: true` (skipped by `skipSpecialTokens`).
    let specialIds: Set<Int32>

    /// The beginning-of-sequence token: `bos_token` of a `tokenizer_config.json` beside the file
    /// when there is one, else the special token the template puts before the text.
    public let bosTokenId: Int32?
    /// The end-of-sequence token: `eos_token` of `tokenizer_config.json`, else the special token
    /// the template puts after the text.
    public let eosTokenId: Int32?

    /// Number of embedding rows the ids need: the largest id of the vocabulary or of an added
    /// token, plus one (`tokenizers`' `get_vocab_size(with_added_tokens=True)` for contiguous ids).
    public var vocabularySize: Int { idToToken.count }

    /// Reads `path`: a `tokenizer.json`, or a directory holding one.
    /// - Throws: `TokenizerError` naming the file: unreadable, not JSON (truncated), not a valid
    ///   tokenizer (missing or mistyped fields, merges with unknown tokens), or an unsupported
    ///   feature (another model type, normalizer, pre-tokenizer, regex, post-processor or decoder,
    ///   truncation or padding).
    public init(path: String) throws(TokenizerError) {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? (path as NSString).appendingPathComponent("tokenizer.json") : path
        self.path = file
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            throw .unreadable(path: file, reason: "\(error.localizedDescription)")
        }
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            throw .badJSON(path: file, offset: error.offset, reason: error.atEnd ? "\(error.reason) (the file ends here: truncated?)" : error.reason)
        }
        let config = try TokenizerConfig(root: root, path: file)
        model = config.model
        byteLevel = config.byteLevel
        normalizers = config.normalizers
        preTokenizers = config.preTokenizers
        decoders = config.decoders
        specialIds = config.specialIds
        idToToken = config.idToToken
        rawAddedTokens = AddedTokenMatcher(config.addedTokens.filter { !$0.normalized })
        // tokenizers normalizes the content of `normalized` added tokens before matching them.
        normalizedAddedTokens = AddedTokenMatcher(config.addedTokens.filter(\.normalized).map {
            var token = $0
            token.content = Self.normalize(token.content, config.normalizers)
            return token
        })
        prefixIds = config.prefixIds
        suffixIds = config.suffixIds

        var bos = config.templateBOS, eos = config.templateEOS
        let sidecar = ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        if let data = FileManager.default.contents(atPath: sidecar) {
            guard let json = try? JSONParser.parse([UInt8](data)) else {
                throw .badJSON(path: sidecar, offset: 0, reason: "tokenizer_config.json beside the tokenizer does not parse")
            }
            func tokenName(_ key: String) -> String? { json[key]?.string ?? json[key]?["content"]?.string }
            if let name = tokenName("bos_token") { bos = config.vocabularyId(name) ?? bos }
            if let name = tokenName("eos_token") { eos = config.vocabularyId(name) ?? eos }
        }
        bosTokenId = bos
        eosTokenId = eos
    }

    /// The id of `token` (an added token or a vocabulary entry, spelled as in the file, e.g.
    /// "Ġthe" for byte-level vocabularies), or nil.
    public func tokenId(_ token: String) -> Int32? {
        let key = Array(token.utf8)
        if let id = rawAddedTokens.id(of: key) ?? normalizedAddedTokens.id(of: key) { return id }
        return model.vocab[key]
    }

    /// The token spelled as in the file for `id`, or nil for an unused id.
    public func token(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < idToToken.count, let bytes = idToToken[Int(id)] else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `tokenizers`' `encode(text, add_special_tokens).ids`.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        let bytes = Array(text.utf8)
        var ids: [Int32] = []
        ids.reserveCapacity(bytes.count / 3 + 4)
        if addSpecialTokens { ids.append(contentsOf: prefixIds) }
        var cache: [[UInt8]: [Int32]] = [:]
        for segment in rawAddedTokens.split(bytes) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                let normalized = Self.normalize(Array(bytes[range]), normalizers)
                for inner in normalizedAddedTokens.split(normalized) {
                    switch inner {
                    case .token(let id):
                        ids.append(id)
                    case .text(let innerRange):
                        let atStart = range.lowerBound == 0 && innerRange.lowerBound == 0
                        for word in Self.preTokenize(Array(normalized[innerRange]), atStart: atStart, preTokenizers) {
                            encodeWord(word, cache: &cache, into: &ids)
                        }
                    }
                }
            }
        }
        if addSpecialTokens { ids.append(contentsOf: suffixIds) }
        return ids
    }

    /// Words longer than this (bytes) are not cached: a Llama-2 style tokenizer without a
    /// pre-tokenizer sends a whole piece of text as one word.
    private static let maxCachedWord = 256

    private func encodeWord(_ word: [UInt8], cache: inout [[UInt8]: [Int32]], into ids: inout [Int32]) {
        let cacheable = word.count <= Self.maxCachedWord
        if cacheable, let hit = cache[word] {
            ids.append(contentsOf: hit)
            return
        }
        var input = word
        if byteLevel {
            input = []
            input.reserveCapacity(word.count * 2)
            for b in word { input.append(contentsOf: Self.byteLevelUTF8[Int(b)]) }
        }
        if cacheable {
            var out: [Int32] = []
            model.tokenize(input, into: &out)
            cache[word] = out
            ids.append(contentsOf: out)
        } else {
            model.tokenize(input, into: &ids)
        }
    }

    /// GPT-2's byte alphabet, each byte's character as UTF-8.
    static let byteLevelUTF8: [[UInt8]] = ByteLevelAlphabet.characters.map { Array(String(Character($0)).utf8) }
}
