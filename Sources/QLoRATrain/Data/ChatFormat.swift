// Renders `messages` rows as a model's chat template does (Hugging Face
// `apply_chat_template(tokenize=False)`), cut into trained and untrained text. Leaves out tools
// and templates other than the three ChatTemplate families.
import Foundation

/// A chat template family plus what a model's own template adds to it (ChatML's default system
/// prompt), read from the model's tokenizer_config.json or given.
public struct ChatFormat: Sendable, Equatable {
    /// A piece of the rendered conversation; `trainable` pieces are an assistant's content and its
    /// end-of-turn token, everything else (headers, other roles, separators) is not trained.
    public struct Segment: Sendable, Equatable {
        public var text: String
        public var trainable: Bool

        public init(_ text: String, trainable: Bool) {
            self.text = text
            self.trainable = trainable
        }
    }

    /// A conversation the template cannot render (Llama-2's template raises on it).
    public struct RenderError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    public var template: ChatTemplate
    /// ChatML only: the system turn written before a conversation that does not start with one.
    public var defaultSystemPrompt: String?

    public init(template: ChatTemplate, defaultSystemPrompt: String? = nil) {
        self.template = template
        self.defaultSystemPrompt = defaultSystemPrompt
    }

    /// The format of the `chat_template` in `modelDirectory/tokenizer_config.json` (a string, or a
    /// list of `{name, template}` of which "default" is used); `override` replaces the detected
    /// family (and makes the file optional). ChatML takes its default system prompt from the file's
    /// template (`ChatTemplate.defaultSystemPrompt(in:)`).
    /// - Throws: `DataError.chatTemplate` when there is no override and the file is missing,
    ///   unreadable, has no chat_template, or a template of an unknown family.
    public init(modelDirectory: String, override: ChatTemplate? = nil) throws(DataError) {
        let path = (modelDirectory as NSString).appendingPathComponent("tokenizer_config.json")
        var jinja: String?
        var problem = "no tokenizer_config.json with a chat_template"
        if let data = FileManager.default.contents(atPath: path) {
            switch (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            case let config?:
                jinja = config["chat_template"] as? String
                    ?? (config["chat_template"] as? [[String: Any]])?.first { $0["name"] as? String == "default" }?["template"] as? String
                problem = jinja == nil ? "no chat_template in the file" : "the chat_template is none of ChatML, Llama-2, Llama-3"
            case nil:
                problem = "not a JSON object"
            }
        }
        guard let template = override ?? jinja.flatMap(ChatTemplate.init(detecting:)) else {
            throw .chatTemplate(path: path, reason: problem)
        }
        self.template = template
        defaultSystemPrompt = template == .chatml ? jinja.flatMap(ChatTemplate.defaultSystemPrompt(in:)) : nil
    }

    /// The conversation as the template renders it, in segments whose texts join to the rendered
    /// string (adjacent untrained pieces merged, no empty segment).
    /// - ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, after the default system
    ///   turn when the first message is not a system one; trained: `{content}<|im_end|>`.
    /// - Llama-3: `<|begin_of_text|>`, then `<|start_header_id|>{role}<|end_header_id|>\n\n`
    ///   `{content.strip()}<|eot_id|>`; trained: `{content.strip()}<|eot_id|>`.
    /// - Llama-2: a first system message goes into the first user turn as
    ///   `<<SYS>>\n{system}\n<</SYS>>\n\n{user}`; user: `<s>[INST] {content.strip()} [/INST]`,
    ///   assistant (trained): ` {content.strip()} </s>`.
    /// `strip()` is Python's `str.strip()` (the templates call it).
    /// - Parameter addGenerationPrompt: Ends with the header of an assistant turn to generate
    ///   (`add_generation_prompt=True`): `<|im_start|>assistant\n` (ChatML),
    ///   `<|start_header_id|>assistant<|end_header_id|>\n\n` (Llama-3), nothing (Llama-2).
    /// - Throws: `RenderError` for Llama-2 when the turns after an optional first system message
    ///   do not alternate user/assistant starting with user (the template raises), or a system
    ///   message comes later (the template would drop it silently).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = false) throws(RenderError) -> [Segment] {
        var out = SegmentBuilder()
        switch template {
        case .chatml:
            if let system = defaultSystemPrompt, messages.first?.role != .system {
                out.add("<|im_start|>system\n\(system)<|im_end|>\n", trainable: false)
            }
            for message in messages {
                out.add("<|im_start|>\(message.role.rawValue)\n", trainable: false)
                out.add(message.content + "<|im_end|>", trainable: message.role == .assistant)
                out.add("\n", trainable: false)
            }
            if addGenerationPrompt { out.add("<|im_start|>assistant\n", trainable: false) }
        case .llama3:
            out.add("<|begin_of_text|>", trainable: false)
            for message in messages {
                out.add("<|start_header_id|>\(message.role.rawValue)<|end_header_id|>\n\n", trainable: false)
                out.add(Self.pythonStrip(message.content) + "<|eot_id|>", trainable: message.role == .assistant)
            }
            if addGenerationPrompt { out.add("<|start_header_id|>assistant<|end_header_id|>\n\n", trainable: false) }
        case .llama2:
            let system = messages.first?.role == .system ? messages[0].content : nil
            for (index, message) in messages.dropFirst(system == nil ? 0 : 1).enumerated() {
                let position = index + (system == nil ? 1 : 2)
                guard message.role != .system else {
                    throw RenderError(description: "message \(position) is a system message; the llama2 template takes one only as the first message")
                }
                guard (message.role == .user) == (index % 2 == 0) else {
                    throw RenderError(description: "message \(position) is \(message.role.rawValue); the llama2 template needs user and assistant turns alternating, starting with user")
                }
                var content = message.content
                if index == 0, let system { content = "<<SYS>>\n\(system)\n<</SYS>>\n\n" + content }
                if message.role == .user {
                    out.add("<s>[INST] \(Self.pythonStrip(content)) [/INST]", trainable: false)
                } else {
                    out.add(" \(Self.pythonStrip(content)) </s>", trainable: true)
                }
            }
        }
        return out.segments
    }

    /// Python's `str.strip()`: removes leading and trailing code points for which `str.isspace()`
    /// holds (Unicode White_Space plus U+001C...U+001F).
    static func pythonStrip(_ text: String) -> String {
        func isSpace(_ scalar: Unicode.Scalar) -> Bool {
            scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
        }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }),
              let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}

/// Collects segments, merging adjacent untrained pieces (trained ones stay apart: each ends a turn).
private struct SegmentBuilder {
    var segments: [ChatFormat.Segment] = []

    mutating func add(_ text: String, trainable: Bool) {
        guard !text.isEmpty else { return }
        if !trainable, let last = segments.last, !last.trainable {
            segments[segments.count - 1].text += text
        } else {
            segments.append(ChatFormat.Segment(text, trainable: trainable))
        }
    }
}
