// Chat templates against Hugging Face (Tests/Fixtures/chat, tools/reference/make_chat_fixtures.py):
// detection, default system prompts, the rendered text of ChatML / Llama-2 / Llama-3, and
// SmolLM2's token ids and assistant-only labels of whole conversations.
import Foundation
import QLoRAIO
import Testing
import _TestSupport
@testable import QLoRATrain

/// The family each fixture template belongs to (nil: none of ours).
private let families: [String: ChatTemplate?] = [
    "smollm2": .chatml, "qwen2": .chatml, "qwen2.5": .chatml, "llama2": .llama2, "llama3": .llama3, "unknown": nil,
]

@Test func detectsTheFamilyOfRealTemplates() throws {
    let cases = try requireChatCases()
    #expect(Set(cases.templates.keys) == Set(families.keys))
    for (name, jinja) in cases.templates {
        #expect(ChatTemplate(detecting: jinja) == families[name]!, "\(name)")
    }
    // Mistral writes [INST] without Llama-2's <<SYS>> block and spaces turns differently.
    #expect(ChatTemplate(detecting: "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}") == nil)
}

@Test func readsTheDefaultSystemPromptFromChatMLTemplates() throws {
    let cases = try requireChatCases()
    for (name, jinja) in cases.templates {
        #expect(ChatTemplate.defaultSystemPrompt(in: jinja) == cases.default_systems[name], "\(name)")
    }
    // Escapes in the literal are decoded as Python decodes them; a system turn built from the
    // messages is no default.
    #expect(ChatTemplate.defaultSystemPrompt(in: #"{{ "<|im_start|>system\nIt\'s \"x\"\tA\\B<|im_end|>\n" }}"#) == "It's \"x\"\tA\\B")
    #expect(ChatTemplate.defaultSystemPrompt(in: "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}") == nil)
}

@Test func formOfAModelDirectory() throws {
    let cases = try requireChatCases()
    let smol = try ChatFormat(modelDirectory: smolDirectory)
    #expect(smol == ChatFormat(template: .chatml, defaultSystemPrompt: cases.default_systems["smollm2"]))
    #expect(try ChatFormat(modelDirectory: smolDirectory, override: .llama3) == ChatFormat(template: .llama3))

    let directory = try TemporaryDirectory()
    let config = (directory.path as NSString).appendingPathComponent("tokenizer_config.json")
    let missing = dataError { _ = try ChatFormat(modelDirectory: directory.path) }
    #expect(missing == .chatTemplate(path: config, reason: "no tokenizer_config.json with a chat_template"))
    #expect(try ChatFormat(modelDirectory: directory.path, override: .llama2) == ChatFormat(template: .llama2))

    try JSONSerialization.data(withJSONObject: ["chat_template": try #require(cases.templates["unknown"])]).write(to: URL(fileURLWithPath: config))
    let unknown = try #require(dataError { _ = try ChatFormat(modelDirectory: directory.path) })
    #expect(unknown.description.hasPrefix(config + ": "))
    #expect(unknown.description.hasSuffix("pass --chat-template chatml|llama2|llama3"))

    // Some models list named templates; "default" is the one used.
    let named: [[String: String]] = [["name": "tool_use", "template": "{{ '[INST]' }}"], ["name": "default", "template": try #require(cases.templates["qwen2"])]]
    try JSONSerialization.data(withJSONObject: ["chat_template": named]).write(to: URL(fileURLWithPath: config))
    #expect(try ChatFormat(modelDirectory: directory.path) == ChatFormat(template: .chatml, defaultSystemPrompt: "You are a helpful assistant."))
}

@Test func rendersLikeTheJinjaTemplates() throws {
    let cases = try requireChatCases()
    #expect(cases.render.count == 13)
    for (index, fixture) in cases.render.enumerated() {
        let jinja = try #require(cases.templates[fixture.template])
        let format = ChatFormat(template: try #require(families[fixture.template]!), defaultSystemPrompt: ChatTemplate.defaultSystemPrompt(in: jinja))
        let messages = try fixture.messages.map(ChatMessage.init)
        guard let expected = fixture.segments else {
            #expect(throws: ChatFormat.RenderError.self, "case \(index): \(fixture.error ?? "")") { try format.render(messages) }
            continue
        }
        let segments = try format.render(messages)
        #expect(segments.map(\.text) == expected.map(\.text), "case \(index) (\(fixture.template))")
        #expect(segments.map(\.trainable) == expected.map(\.trainable), "case \(index) (\(fixture.template))")
        let prompted = try format.render(messages, addGenerationPrompt: true).map(\.text).joined()
        #expect(prompted == fixture.with_generation_prompt, "case \(index) (\(fixture.template))")
    }
}

@Test func llama2RefusesWhatItsTemplateRaisesOn() {
    let format = ChatFormat(template: .llama2)
    #expect(throws: ChatFormat.RenderError(description: "message 2 is user; the llama2 template needs user and assistant turns alternating, starting with user")) {
        try format.render([ChatMessage(.user, "a"), ChatMessage(.user, "b"), ChatMessage(.assistant, "c")])
    }
    #expect(throws: ChatFormat.RenderError(description: "message 3 is a system message; the llama2 template takes one only as the first message")) {
        try format.render([ChatMessage(.user, "a"), ChatMessage(.assistant, "b"), ChatMessage(.system, "c")])
    }
}

@Test func stripIsPythons() {
    // str.isspace(): Unicode White_Space plus U+001C...U+001F, per code point (not per Character).
    #expect(ChatFormat.pythonStrip("\u{1C}\u{85}\u{A0}\u{2028} a b \u{3000}") == "a b")
    #expect(ChatFormat.pythonStrip(" a\u{200B}") == "a\u{200B}")
    #expect(ChatFormat.pythonStrip(" \u{301}x\r\n") == "\u{301}x")
    #expect(ChatFormat.pythonStrip(" \t\n") == "")
}

@Test func conversationsTokenizeLikeTheWholeRenderedString() throws {
    let cases = try requireChatCases()
    let tokenizer = try requireSmolTokenizer()
    let format = try ChatFormat(modelDirectory: smolDirectory)
    for (index, fixture) in cases.chat.enumerated() {
        let segments = try format.render(try fixture.messages.map(ChatMessage.init))
        #expect(segments.map(\.text).joined() == fixture.rendered, "chat \(index)")
    }
    let file = try DataFile(lines: try cases.chat.map { try jsonLine(["messages": $0.messages.map { ["role": $0.role, "content": $0.content] }]) })
    let dataset = try DatasetReader(tokenizer: tokenizer, vocabularySize: smolVocabularySize).read(file.path)
    #expect(dataset.examples.count == cases.chat.count)
    for (example, fixture) in zip(dataset.examples, cases.chat) {
        #expect(example.tokens == fixture.tokens, "line \(example.line)")
        #expect(example.labels == fixture.labels, "line \(example.line)")
    }
    #expect(dataset.examples.map(\.line) == Array(1...cases.chat.count))
}

@Test func chatTemplateMustFitTheTokenizer() throws {
    let tokenizer = try requireSmolTokenizer()
    let file = try DataFile(lines: [#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#])
    let error = dataError { _ = try DatasetReader(tokenizer: tokenizer, vocabularySize: smolVocabularySize, chatTemplate: .llama2).read(file.path) }
    #expect(error == .chatTemplate(path: tokenizer.path, reason: "the tokenizer has no single token for </s>, which ends every llama2 turn"))
}
