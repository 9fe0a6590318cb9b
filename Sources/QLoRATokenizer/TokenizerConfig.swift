// tokenizer.json -> the tables `Tokenizer` runs on, checking every field it reads (types, ids,
// merges) and refusing features it does not implement. Field names follow tokenizers' serde
// serialization (tokenizers 0.23 `Tokenizer::to_str`).
import QLoRAIO

/// What a tokenizer.json says, in the form `Tokenizer` uses.
struct TokenizerConfig {
    let path: String
    var model: BPEModel
    var byteLevel = false
    var normalizers: [NormalizerStep] = []
    var preTokenizers: [PreTokenizerStep] = []
    var decoders: [DecoderStep]?
    var addedTokens: [AddedToken] = []
    var specialIds: Set<Int32> = []
    var idToToken: [[UInt8]?] = []
    var prefixIds: [Int32] = []
    var suffixIds: [Int32] = []
    var templateBOS: Int32?
    var templateEOS: Int32?

    init(root: JSONValue, path: String) throws(TokenizerError) {
        self.path = path
        guard root.members != nil else { throw .invalid(path: path, field: "the top level", reason: "is \(root.typeName), not an object") }
        for key in ["truncation", "padding"] {
            if let value = root[key], !value.isNull {
                throw .unsupported(path: path, feature: "\(key) is set (encode would \(key == "truncation" ? "truncate" : "pad")); set it to null")
            }
        }
        guard let modelJSON = root["model"] else { throw .invalid(path: path, field: "model", reason: "is missing") }
        model = try Self.bpe(modelJSON, path: path)

        // Added tokens.
        if let list = root["added_tokens"], !list.isNull {
            guard let entries = list.array else { throw .invalid(path: path, field: "added_tokens", reason: "is \(list.typeName), not an array") }
            for (index, entry) in entries.enumerated() {
                let field = "added_tokens[\(index)]"
                guard let id = entry["id"]?.int, id >= 0, id <= Int(Int32.max) else {
                    throw .invalid(path: path, field: "\(field).id", reason: "is missing or not a non-negative integer")
                }
                guard let content = entry["content"]?.string else { throw .invalid(path: path, field: "\(field).content", reason: "is missing or not a string") }
                func flag(_ key: String, _ fallback: Bool) throws(TokenizerError) -> Bool {
                    guard let value = entry[key] else { return fallback }
                    guard let b = value.bool else { throw .invalid(path: path, field: "\(field).\(key)", reason: "is \(value.typeName), not a boolean") }
                    return b
                }
                let special = try flag("special", false)
                addedTokens.append(AddedToken(content: Array(content.utf8), id: Int32(id), special: special,
                                              normalized: try flag("normalized", !special), singleWord: try flag("single_word", false),
                                              lstrip: try flag("lstrip", false), rstrip: try flag("rstrip", false)))
                if special { specialIds.insert(Int32(id)) }
            }
        }
        var maxId = -1
        for id in model.vocab.values { maxId = max(maxId, Int(id)) }
        for token in addedTokens { maxId = max(maxId, Int(token.id)) }
        idToToken = [[UInt8]?](repeating: nil, count: maxId + 1)
        for (token, id) in model.vocab { idToToken[Int(id)] = token }
        for token in addedTokens { idToToken[Int(token.id)] = token.content }

        if let json = root["normalizer"], !json.isNull { normalizers = try Self.normalizerSteps(json, field: "normalizer", path: path) }
        if let json = root["pre_tokenizer"], !json.isNull {
            preTokenizers = try Self.preTokenizerSteps(json, field: "pre_tokenizer", path: path)
            for (index, step) in preTokenizers.enumerated() {
                guard case .byteLevel = step else { continue }
                guard index == preTokenizers.count - 1 else {
                    throw .unsupported(path: path, feature: "pre_tokenizer: a ByteLevel step followed by other pre-tokenizers")
                }
                byteLevel = true
            }
        }
        if let json = root["post_processor"], !json.isNull { try postProcessor(json, field: "post_processor") }
        if let json = root["decoder"], !json.isNull { decoders = try Self.decoderSteps(json, field: "decoder", path: path) }
    }

    /// The id of an added token or vocabulary entry spelled `token`.
    func vocabularyId(_ token: String) -> Int32? {
        let key = Array(token.utf8)
        return addedTokens.last { $0.content == key }?.id ?? model.vocab[key]
    }

    // MARK: - Model

    private static func bpe(_ json: JSONValue, path: String) throws(TokenizerError) -> BPEModel {
        guard json.members != nil else { throw .invalid(path: path, field: "model", reason: "is \(json.typeName), not an object") }
        let type = json["type"]?.string ?? "BPE"
        guard type == "BPE" else { throw .unsupported(path: path, feature: "model type '\(type)' (only BPE is implemented)") }
        if let dropout = json["dropout"], !dropout.isNull, dropout.number != 0 {
            throw .unsupported(path: path, feature: "model.dropout \(dropout.number.map { "\($0)" } ?? dropout.typeName) (random merges)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = json[key], !value.isNull, value.string != "" {
                throw .unsupported(path: path, feature: "model.\(key) '\(value.string ?? value.typeName)'")
            }
        }
        func flag(_ key: String) throws(TokenizerError) -> Bool {
            guard let value = json[key], !value.isNull else { return false }
            guard let b = value.bool else { throw .invalid(path: path, field: "model.\(key)", reason: "is \(value.typeName), not a boolean") }
            return b
        }

        guard let vocabJSON = json["vocab"] else { throw .invalid(path: path, field: "model.vocab", reason: "is missing") }
        guard let members = vocabJSON.members else { throw .invalid(path: path, field: "model.vocab", reason: "is \(vocabJSON.typeName), not an object") }
        var vocab: [[UInt8]: Int32] = [:]
        vocab.reserveCapacity(members.count)
        var scalarIds: [UInt32: Int32] = [:]
        for (token, value) in members {
            guard let id = value.int, id >= 0, id <= Int(Int32.max) else {
                throw .invalid(path: path, field: "model.vocab[\"\(token)\"]", reason: "is \(value.typeName), not a non-negative integer id")
            }
            vocab[Array(token.utf8)] = Int32(id)
            var scalars = token.unicodeScalars.makeIterator()
            if let first = scalars.next(), scalars.next() == nil { scalarIds[first.value] = Int32(id) }
        }

        guard let mergesJSON = json["merges"] else { throw .invalid(path: path, field: "model.merges", reason: "is missing") }
        guard let list = mergesJSON.array else { throw .invalid(path: path, field: "model.merges", reason: "is \(mergesJSON.typeName), not an array") }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(list.count)
        for (rank, entry) in list.enumerated() {
            let field = "model.merges[\(rank)]"
            let left: String, right: String
            if let line = entry.string {
                // tokenizers: `line.split(' ')` must give exactly two parts.
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw .invalid(path: path, field: field, reason: "'\(line)' is not two tokens separated by one space") }
                (left, right) = (String(parts[0]), String(parts[1]))
            } else if let pair = entry.array, pair.count == 2, let l = pair[0].string, let r = pair[1].string {
                (left, right) = (l, r)
            } else {
                throw .invalid(path: path, field: field, reason: "is \(entry.typeName), not \"a b\" or [\"a\", \"b\"]")
            }
            let a = Array(left.utf8), b = Array(right.utf8)
            guard let leftId = vocab[a] else { throw .invalid(path: path, field: field, reason: "uses '\(left)', which is not in model.vocab") }
            guard let rightId = vocab[b] else { throw .invalid(path: path, field: field, reason: "uses '\(right)', which is not in model.vocab") }
            guard let mergedId = vocab[a + b] else { throw .invalid(path: path, field: field, reason: "makes '\(left + right)', which is not in model.vocab") }
            merges[BPEModel.pair(leftId, rightId)] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: mergedId))
        }

        var unkId: Int32?
        if let unk = json["unk_token"], !unk.isNull {
            guard let name = unk.string else { throw .invalid(path: path, field: "model.unk_token", reason: "is \(unk.typeName), not a string") }
            guard let id = vocab[Array(name.utf8)] else { throw .invalid(path: path, field: "model.unk_token", reason: "'\(name)' is not in model.vocab") }
            unkId = id
        }
        var byteIds: [Int32] = []
        if try flag("byte_fallback") {
            byteIds = (0..<256).map { b in vocab[Array("<0x\(b < 16 ? "0" : "")\(String(b, radix: 16, uppercase: true))>".utf8)] ?? -1 }
        }
        return BPEModel(vocab: vocab, merges: merges, scalarIds: scalarIds, byteIds: byteIds, unkId: unkId,
                        fuseUnk: try flag("fuse_unk"), ignoreMerges: try flag("ignore_merges"))
    }

    // MARK: - Normalizer, pre-tokenizer, decoder

    private static func type(_ json: JSONValue, _ field: String, _ path: String) throws(TokenizerError) -> String {
        guard json.members != nil else { throw .invalid(path: path, field: field, reason: "is \(json.typeName), not an object") }
        guard let type = json["type"]?.string else { throw .invalid(path: path, field: "\(field).type", reason: "is missing or not a string") }
        return type
    }

    private static func string(_ json: JSONValue, _ key: String, _ field: String, _ path: String) throws(TokenizerError) -> String {
        guard let value = json[key]?.string else { throw .invalid(path: path, field: "\(field).\(key)", reason: "is missing or not a string") }
        return value
    }

    private static func list(_ json: JSONValue, _ key: String, _ field: String, _ path: String) throws(TokenizerError) -> [JSONValue] {
        guard let value = json[key]?.array else { throw .invalid(path: path, field: "\(field).\(key)", reason: "is missing or not an array") }
        return value
    }

    /// A `{"String": s}` pattern; a `{"Regex": ...}` one is refused.
    private static func stringPattern(_ json: JSONValue, _ field: String, _ path: String) throws(TokenizerError) -> String {
        guard let pattern = json["pattern"] else { throw .invalid(path: path, field: "\(field).pattern", reason: "is missing") }
        if let s = pattern["String"]?.string { return s }
        if let r = pattern["Regex"]?.string { throw .unsupported(path: path, feature: "\(field): a Regex pattern '\(r)'") }
        throw .invalid(path: path, field: "\(field).pattern", reason: "is neither {\"String\": ...} nor {\"Regex\": ...}")
    }

    private static func normalizerSteps(_ json: JSONValue, field: String, path: String) throws(TokenizerError) -> [NormalizerStep] {
        switch try type(json, field, path) {
        case "Sequence":
            var steps: [NormalizerStep] = []
            for (i, item) in try list(json, "normalizers", field, path).enumerated() {
                steps += try normalizerSteps(item, field: "\(field).normalizers[\(i)]", path: path)
            }
            return steps
        case "Prepend":
            return [.prepend(Array(try string(json, "prepend", field, path).utf8))]
        case "Replace":
            return [.replace(pattern: Array(try stringPattern(json, field, path).utf8), content: Array(try string(json, "content", field, path).utf8))]
        case let other:
            throw .unsupported(path: path, feature: "\(field) '\(other)'")
        }
    }

    private static func prependScheme(_ json: JSONValue, _ field: String, _ path: String) throws(TokenizerError) -> PrependScheme {
        if let scheme = json["prepend_scheme"] {
            switch scheme.string {
            case "always": return .always
            case "first": return .first
            case "never": return .never
            default: throw .invalid(path: path, field: "\(field).prepend_scheme", reason: "is not \"always\", \"first\" or \"never\"")
            }
        }
        // Files written before tokenizers 0.14: add_prefix_space.
        return json["add_prefix_space"]?.bool == false ? .never : .always
    }

    private static func replacement(_ json: JSONValue, _ field: String, _ path: String) throws(TokenizerError) -> Unicode.Scalar {
        let text = try string(json, "replacement", field, path)
        guard text.unicodeScalars.count == 1, let scalar = text.unicodeScalars.first else {
            throw .invalid(path: path, field: "\(field).replacement", reason: "is not one character")
        }
        return scalar
    }

    private static func preTokenizerSteps(_ json: JSONValue, field: String, path: String) throws(TokenizerError) -> [PreTokenizerStep] {
        switch try type(json, field, path) {
        case "Sequence":
            var steps: [PreTokenizerStep] = []
            for (i, item) in try list(json, "pretokenizers", field, path).enumerated() {
                steps += try preTokenizerSteps(item, field: "\(field).pretokenizers[\(i)]", path: path)
            }
            return steps
        case "ByteLevel":
            return [.byteLevel(addPrefixSpace: json["add_prefix_space"]?.bool ?? true, useRegex: json["use_regex"]?.bool ?? true)]
        case "Split":
            guard let pattern = json["pattern"] else { throw .invalid(path: path, field: "\(field).pattern", reason: "is missing") }
            guard let regex = pattern["Regex"]?.string else {
                throw .unsupported(path: path, feature: "\(field): Split on a String pattern (only the GPT-2 / Llama-3 / Qwen2 regexes are implemented)")
            }
            guard let known = SplitPattern.regexes.first(where: { $0.0 == regex })?.1 else {
                throw .unsupported(path: path, feature: "\(field): Split regex '\(regex)' (only the GPT-2 / Llama-3 / Qwen2 regexes are implemented)")
            }
            let behavior = json["behavior"]?.string ?? "Isolated"
            guard behavior == "Isolated", json["invert"]?.bool != true else {
                throw .unsupported(path: path, feature: "\(field): Split behavior '\(behavior)'\(json["invert"]?.bool == true ? " inverted" : "") (only Isolated)")
            }
            return [.split(known)]
        case "Digits":
            return [.digits(individual: json["individual_digits"]?.bool ?? false)]
        case "Metaspace":
            let scalar = try replacement(json, field, path)
            return [.metaspace(replacement: Array(String(Character(scalar)).utf8), prepend: try prependScheme(json, field, path),
                               split: json["split"]?.bool ?? true)]
        case let other:
            throw .unsupported(path: path, feature: "\(field) '\(other)'")
        }
    }

    private static func decoderSteps(_ json: JSONValue, field: String, path: String) throws(TokenizerError) -> [DecoderStep] {
        switch try type(json, field, path) {
        case "Sequence":
            var steps: [DecoderStep] = []
            for (i, item) in try list(json, "decoders", field, path).enumerated() {
                steps += try decoderSteps(item, field: "\(field).decoders[\(i)]", path: path)
            }
            return steps
        case "ByteLevel": return [.byteLevel]
        case "ByteFallback": return [.byteFallback]
        case "Fuse": return [.fuse]
        case "Replace":
            return [.replace(pattern: Array(try stringPattern(json, field, path).utf8), content: Array(try string(json, "content", field, path).utf8))]
        case "Strip":
            let content = try string(json, "content", field, path)
            guard content.unicodeScalars.count == 1, let scalar = content.unicodeScalars.first else {
                throw .invalid(path: path, field: "\(field).content", reason: "is not one character")
            }
            guard let start = json["start"]?.int, let stop = json["stop"]?.int, start >= 0, stop >= 0 else {
                throw .invalid(path: path, field: "\(field).start/stop", reason: "are missing or not non-negative integers")
            }
            return [.strip(content: scalar, start: start, stop: stop)]
        case "Metaspace":
            return [.metaspace(replacement: try replacement(json, field, path), prependScheme: try prependScheme(json, field, path))]
        case let other:
            throw .unsupported(path: path, feature: "\(field) '\(other)'")
        }
    }

    // MARK: - Post-processor

    private mutating func postProcessor(_ json: JSONValue, field: String) throws(TokenizerError) {
        switch try Self.type(json, field, path) {
        case "Sequence":
            for (i, item) in try Self.list(json, "processors", field, path).enumerated() {
                try postProcessor(item, field: "\(field).processors[\(i)]")
            }
        case "ByteLevel":
            return   // offsets only
        case "TemplateProcessing":
            guard prefixIds.isEmpty && suffixIds.isEmpty else {
                throw .unsupported(path: path, feature: "\(field): more than one TemplateProcessing")
            }
            var specials: [String: [Int32]] = [:]
            if let table = json["special_tokens"]?.members {
                for (name, entry) in table {
                    guard let ids = entry["ids"]?.array, ids.allSatisfy({ ($0.int ?? -1) >= 0 }) else {
                        throw .invalid(path: path, field: "\(field).special_tokens[\"\(name)\"].ids", reason: "is missing or not an array of ids")
                    }
                    specials[name] = ids.map { Int32(clamping: $0.int ?? 0) }
                }
            }
            var sawSequence = false
            for (i, item) in try Self.list(json, "single", field, path).enumerated() {
                if let special = item["SpecialToken"] {
                    guard let name = special["id"]?.string, let ids = specials[name] else {
                        throw .invalid(path: path, field: "\(field).single[\(i)]", reason: "names a special token missing from special_tokens")
                    }
                    if sawSequence {
                        suffixIds += ids
                        if templateEOS == nil { templateEOS = ids.first }
                    } else {
                        prefixIds += ids
                        if templateBOS == nil { templateBOS = ids.first }
                    }
                } else if let sequence = item["Sequence"] {
                    guard sequence["id"]?.string == "A", !sawSequence else {
                        throw .unsupported(path: path, feature: "\(field).single[\(i)]: a template other than specials, $A, specials")
                    }
                    sawSequence = true
                } else {
                    throw .invalid(path: path, field: "\(field).single[\(i)]", reason: "is neither a SpecialToken nor a Sequence")
                }
            }
            guard sawSequence else { throw .unsupported(path: path, feature: "\(field).single without $A") }
        case let other:
            throw .unsupported(path: path, feature: "\(field) '\(other)'")
        }
    }
}
