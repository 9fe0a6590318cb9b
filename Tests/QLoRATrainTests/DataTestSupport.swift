// Shared by the data-pipeline tests: the fixtures of tools/reference/make_chat_fixtures.py
// (Tests/Fixtures/chat), SmolLM2's tokenizer as a model directory, and temporary JSONL files.
import Foundation
import QLoRAIO
import QLoRATokenizer
import Testing
import _TestSupport
@testable import QLoRATrain

/// Tests/Fixtures/chat/cases.json.
struct ChatCases: Decodable {
    struct Message: Decodable {
        let role: String
        let content: String
    }
    /// `[text, trainable]`.
    struct Segment: Decodable {
        let text: String
        let trainable: Bool
        init(from decoder: any Decoder) throws {
            var pair = try decoder.unkeyedContainer()
            text = try pair.decode(String.self)
            trainable = try pair.decode(Bool.self)
        }
    }
    struct TextCase: Decodable {
        let text: String
        let tokens: [Int32]
        let labels: [Int32]
    }
    struct PromptCompletionCase: Decodable {
        let prompt: String
        let completion: String
        let tokens: [Int32]
        let labels: [Int32]
    }
    struct ChatCase: Decodable {
        let messages: [Message]
        let rendered: String
        let tokens: [Int32]
        let labels: [Int32]
    }
    struct RenderCase: Decodable {
        let template: String
        let messages: [Message]
        let segments: [Segment]?
        let with_generation_prompt: String?
        let error: String?
    }
    let templates: [String: String]
    let default_systems: [String: String]
    let text: [TextCase]
    let prompt_completion: [PromptCompletionCase]
    let chat: [ChatCase]
    let render: [RenderCase]
}

let chatFixtures = fixturesDirectory("chat")
let chatCases: ChatCases? = (try? Data(contentsOf: chatFixtures.appendingPathComponent("cases.json")))
    .flatMap { try? JSONDecoder().decode(ChatCases.self, from: $0) }

func requireChatCases() throws -> ChatCases {
    try #require(chatCases, "Tests/Fixtures/chat/cases.json is missing; run tools/reference/make_chat_fixtures.py")
}

/// SmolLM2-135M's vocab_size.
let smolVocabularySize = 49152
/// SmolLM2's model directory: Tests/Fixtures/chat/smollm2 (tokenizer.json links to the tokenizer fixture).
let smolDirectory = chatFixtures.appendingPathComponent("smollm2").path
let smolTokenizer: Tokenizer? = try? Tokenizer(path: smolDirectory)

func requireSmolTokenizer() throws -> Tokenizer {
    try #require(smolTokenizer, "cannot load \(smolDirectory)/tokenizer.json; run tools/reference/make_chat_fixtures.py")
}

extension ChatMessage {
    init(_ message: ChatCases.Message) throws {
        self.init(try #require(Role(rawValue: message.role)), message.content)
    }
}

/// A JSON object as one JSONL line.
func jsonLine(_ object: [String: Any]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
}

/// A data file holding `text` in a temporary directory that lives as long as the value.
final class DataFile {
    let directory: TemporaryDirectory
    let path: String

    init(_ text: String) throws {
        directory = try TemporaryDirectory()
        path = (directory.path as NSString).appendingPathComponent("data.jsonl")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// One line per entry, each ended by "\n".
    convenience init(lines: [String]) throws {
        try self.init(lines.map { $0 + "\n" }.joined())
    }
}

/// The `DataError` that `body` throws; nil (and a recorded issue for any other error) otherwise.
func dataError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> DataError? {
    do {
        try body()
        return nil
    } catch let error as DataError {
        return error
    } catch {
        Issue.record("expected a DataError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
