// The chat-template families the data reader renders itself (no Jinja interpreter): ChatML,
// Llama-2 and Llama-3, recognized from a template's markers. Other templates are refused.

/// A chat-template family, as `--chat-template` names it.
public enum ChatTemplate: String, CaseIterable, Sendable {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen2, ...).
    case chatml
    /// `<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s>` (Llama-2-chat).
    case llama2
    /// `<|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama-3-Instruct).
    case llama3

    /// The family of a Jinja `chat_template`, or nil when it has none of the known markers:
    /// `<|im_start|>` is ChatML, `<|start_header_id|>` Llama-3, `[INST]` together with `<<SYS>>`
    /// Llama-2 (Mistral's `[INST]` templates have no `<<SYS>>` and space the turns differently,
    /// so they are not taken for Llama-2).
    public init?(detecting jinja: String) {
        if jinja.contains("<|im_start|>") {
            self = .chatml
        } else if jinja.contains("<|start_header_id|>") {
            self = .llama3
        } else if jinja.contains("[INST]") && jinja.contains("<<SYS>>") {
            self = .llama2
        } else {
            return nil
        }
    }

    /// The special token that closes a trained assistant turn; the tokenizer must have it as one token.
    public var endOfTurn: String {
        switch self {
        case .chatml: "<|im_end|>"
        case .llama2: "</s>"
        case .llama3: "<|eot_id|>"
        }
    }

    /// The system prompt a ChatML template writes when the conversation does not start with a
    /// system message: the first string literal of `jinja` that holds a whole system turn,
    /// `'<|im_start|>system\n` TEXT `<|im_end|>` (quoted with ' or ", the newline written as is or
    /// as `\n`), with the Python string escapes \n \t \r \\ \' \" decoded (any other backslash is
    /// kept). Nil when there is none, e.g. when the system turn is built from `messages[0]['content']`.
    public static func defaultSystemPrompt(in jinja: String) -> String? {
        let opening = Array("<|im_start|>system".unicodeScalars)
        let closing = Array("<|im_end|>".unicodeScalars)
        let scalars = Array(jinja.unicodeScalars)
        for start in scalars.indices.dropFirst() where scalars[start...].starts(with: opening) {
            let quote = scalars[start - 1]
            guard quote == "'" || quote == "\"" else { continue }
            var i = start + opening.count
            if i < scalars.count, scalars[i] == "\n" {
                i += 1
            } else if i + 1 < scalars.count, scalars[i] == "\\", scalars[i + 1] == "n" {
                i += 2
            } else {
                continue
            }
            var text = String.UnicodeScalarView()
            while i < scalars.count, scalars[i] != quote {
                if scalars[i...].starts(with: closing) { return String(text) }
                if scalars[i] == "\\", i + 1 < scalars.count {
                    switch scalars[i + 1] {
                    case "n": text.append("\n")
                    case "t": text.append("\t")
                    case "r": text.append("\r")
                    case "\\", "'", "\"": text.append(scalars[i + 1])
                    default: text.append(contentsOf: scalars[i...i + 1])
                    }
                    i += 2
                } else {
                    text.append(scalars[i])
                    i += 1
                }
            }
        }
        return nil
    }
}
