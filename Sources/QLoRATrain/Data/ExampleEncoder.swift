// Turns one JSON row of a data file into token ids and labels according to its form. Leaves out
// reading the file, truncation and the trainable-token check (DatasetReader).
import Foundation
import QLoRAIO
import QLoRATokenizer
import QLoRAModel

/// Why a row failed: a bad row (reported with its line) or a problem that stops reading the file.
enum RowError: Error {
    case bad(String)
    /// The row's form needs a tokenizer and there is none (DataError.noTokenizer, once the
    /// reader adds the path).
    case needsTokenizer(ExampleEncoder.Form)
    case fatal(DataError)
}

/// Encodes the four row forms (see `DatasetReader`) with a model's tokenizer and chat template.
struct ExampleEncoder: Sendable {
    /// The shape of a row, told by its keys.
    enum Form: String, Sendable {
        case text
        case promptCompletion = "prompt/completion"
        case messages
        case tokenIds = "input_ids"
    }

    let tokenizer: Tokenizer?
    let vocabularySize: Int
    /// The chat format with its end-of-turn id, or why `messages` rows cannot be rendered; nil
    /// without a tokenizer.
    let chat: Result<(format: ChatFormat, endOfTurnId: Int32), DataError>?

    /// - Parameter chatTemplate: overrides the template family of the tokenizer_config.json beside
    ///   the tokenizer.
    init(tokenizer: Tokenizer?, vocabularySize: Int, chatTemplate: ChatTemplate?) {
        precondition(vocabularySize > 0)
        self.tokenizer = tokenizer
        self.vocabularySize = vocabularySize
        chat = tokenizer.map { tokenizer in
            Result { () throws(DataError) in
                let format = try ChatFormat(modelDirectory: (tokenizer.path as NSString).deletingLastPathComponent, override: chatTemplate)
                return (format, try format.endOfTurnId(in: tokenizer))
            }
        }
    }

    /// The form of `object`: exactly one of `text`, `prompt`/`completion`, `messages`, `input_ids`
    /// must be present (other keys are ignored).
    static func form(of object: JSONObject) throws(RowError) -> Form {
        var found: [Form] = []
        if object["text"] != nil { found.append(.text) }
        if object["prompt"] != nil || object["completion"] != nil { found.append(.promptCompletion) }
        if object["messages"] != nil { found.append(.messages) }
        if object["input_ids"] != nil { found.append(.tokenIds) }
        guard found.count == 1 else {
            if found.isEmpty {
                let keys = object.keys.sorted().prefix(5).map { "'\($0)'" }.joined(separator: ", ")
                throw .bad("no 'text', 'prompt'/'completion', 'messages' or 'input_ids' field (found \(keys.isEmpty ? "no field" : keys))")
            }
            throw .bad("fields of several forms (\(found.map(\.rawValue).joined(separator: ", "))); use one form per row")
        }
        return found[0]
    }

    /// Tokens and labels of a row of `form`, every token id checked against the vocabulary.
    func encode(_ object: JSONObject, as form: Form) throws(RowError) -> (tokens: [Int32], labels: [Int32]) {
        let result = switch form {
        case .text: try encodeText(object)
        case .promptCompletion: try encodePromptCompletion(object)
        case .messages: try encodeMessages(object)
        case .tokenIds: try encodeTokenIds(object)
        }
        if let bad = result.tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw .bad("token id \(result.tokens[bad]) at position \(bad) is outside the model's vocabulary [0, \(vocabularySize))")
        }
        return result
    }

    /// `{"text"}`: the tokenizer's special tokens (BOS where its post-processor adds one), the
    /// text, then EOS unless the encoding already ends with it; loss on every token.
    private func encodeText(_ object: JSONObject) throws(RowError) -> (tokens: [Int32], labels: [Int32]) {
        let text = try string(object, "text")
        guard !text.isEmpty else { throw .bad("'text' is empty") }
        let (tokenizer, eos) = try tokenizerWithEOS(form: .text)
        var tokens = tokenizer.encode(text, addSpecialTokens: true)
        if tokens.last != eos { tokens.append(eos) }
        return (tokens, tokens)
    }

    /// `{"prompt", "completion"}`: the prompt with the tokenizer's special tokens, the completion
    /// without, then EOS; loss on the completion and EOS. The prompt may be empty.
    private func encodePromptCompletion(_ object: JSONObject) throws(RowError) -> (tokens: [Int32], labels: [Int32]) {
        let prompt = try string(object, "prompt"), completion = try string(object, "completion")
        guard !completion.isEmpty else { throw .bad("'completion' is empty") }
        let (tokenizer, eos) = try tokenizerWithEOS(form: .promptCompletion)
        let head = tokenizer.encode(prompt, addSpecialTokens: true)
        let tail = tokenizer.encode(completion, addSpecialTokens: false) + [eos]
        return (head + tail, [Int32](repeating: TokenBatch.ignore, count: head.count) + tail)
    }

    /// `{"messages": [{"role", "content"}, ...]}`: rendered by the chat template, loss on the
    /// assistant turns (`ChatFormat.tokenize`); at least one assistant message.
    private func encodeMessages(_ object: JSONObject) throws(RowError) -> (tokens: [Int32], labels: [Int32]) {
        let value = object["messages"]!
        guard let list = value.array else {
            throw .bad("'messages' must be an array of {\"role\", \"content\"} objects, not \(Self.describe(value))")
        }
        var messages: [ChatMessage] = []
        for (index, item) in list.enumerated() {
            guard case .object(let message) = item else { throw .bad("messages[\(index)] must be an object, not \(Self.describe(item))") }
            let roleName = try string(message, "role", in: "messages[\(index)]")
            guard let role = ChatMessage.Role(rawValue: roleName) else {
                throw .bad("messages[\(index)].role '\(roleName)' is not one of system, user, assistant")
            }
            messages.append(ChatMessage(role, try string(message, "content", in: "messages[\(index)]")))
        }
        guard messages.contains(where: { $0.role == .assistant }) else { throw .bad("no assistant message: nothing to train on") }
        guard let tokenizer, let chat else { throw .needsTokenizer(.messages) }
        let (format, endOfTurnId): (ChatFormat, Int32)
        switch chat {
        case .success(let resolved): (format, endOfTurnId) = resolved
        case .failure(let error): throw .fatal(error)
        }
        let segments: [ChatFormat.Segment]
        do {
            segments = try format.render(messages)
        } catch {
            throw .bad(error.description)
        }
        return format.tokenize(segments, with: tokenizer, endOfTurnId: endOfTurnId)
    }

    /// `{"input_ids": [...], "labels": [...]}` taken as they are; `labels` defaults to the ids and
    /// must have the same length, each -100 or an id of the vocabulary.
    private func encodeTokenIds(_ object: JSONObject) throws(RowError) -> (tokens: [Int32], labels: [Int32]) {
        let tokens = try ids(object, "input_ids")
        guard !tokens.isEmpty else { throw .bad("'input_ids' is empty") }
        guard object["labels"] != nil else { return (tokens, tokens) }
        let labels = try ids(object, "labels")
        guard labels.count == tokens.count else {
            throw .bad("'labels' has \(labels.count) entries but 'input_ids' has \(tokens.count)")
        }
        if let bad = labels.firstIndex(where: { $0 != TokenBatch.ignore && ($0 < 0 || Int($0) >= vocabularySize) }) {
            throw .bad("labels[\(bad)] = \(labels[bad]) is neither -100 nor an id of the vocabulary [0, \(vocabularySize))")
        }
        return (tokens, labels)
    }

    private func tokenizerWithEOS(form: Form) throws(RowError) -> (Tokenizer, Int32) {
        guard let tokenizer else { throw .needsTokenizer(form) }
        guard let eos = tokenizer.eosTokenId else { throw .fatal(.noEOSToken(tokenizer: tokenizer.path)) }
        return (tokenizer, eos)
    }

    /// The string field `key` of `object`; `owner` names the object in messages ("messages[2]").
    private func string(_ object: JSONObject, _ key: String, in owner: String? = nil) throws(RowError) -> String {
        let name = owner.map { "\($0).\(key)" } ?? "'\(key)'"
        guard let value = object[key] else { throw .bad("no \(name) field") }
        guard case .string(let text) = value else { throw .bad("\(name) must be a string, not \(Self.describe(value))") }
        return text
    }

    /// The array of integers `key` of `object`, each within Int32.
    private func ids(_ object: JSONObject, _ key: String) throws(RowError) -> [Int32] {
        let value = object[key]!
        if case .integers(let ids) = value { return ids }
        guard let list = value.array else { throw .bad("'\(key)' must be an array of integers, not \(Self.describe(value))") }
        var out: [Int32] = []
        out.reserveCapacity(list.count)
        for (index, item) in list.enumerated() {
            guard case .integer(let integer) = item else { throw .bad("\(key)[\(index)] is \(Self.describe(item)), not an integer") }
            guard let id = Int32(exactly: integer) else {
                throw .bad("\(key)[\(index)] = \(integer) is outside the vocabulary [0, \(vocabularySize))")
            }
            out.append(id)
        }
        return out
    }

    /// A JSON value's kind for messages: "a string", "the number 1.5", "a boolean", "null", ...
    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .integer(let number): return "the number \(number)"
        case .double(let number): return "the number \(number)"
        case .string: return "a string"
        case .integers, .array: return "an array"
        case .object: return "an object"
        }
    }
}
