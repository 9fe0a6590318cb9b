// Splitting text on added tokens as tokenizers' AddedVocabulary does (tokenizer/added_vocabulary.rs
// `find_matches`): leftmost-longest, non-overlapping, with single_word / lstrip / rstrip.
import QLoRAIO

/// One entry of tokenizer.json `added_tokens`.
struct AddedToken: Sendable {
    var content: [UInt8]
    let id: Int32
    let special: Bool
    let normalized: Bool
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
}

/// Finds added tokens in text.
struct AddedTokenMatcher: Sendable {
    enum Segment {
        case token(Int32)
        case text(Range<Int>)
    }

    private let tokens: [AddedToken]
    /// For each first byte, indices into `tokens` by content length, longest first.
    private let candidates: [[Int]]
    private let ids: [[UInt8]: Int32]

    init(_ tokens: [AddedToken]) {
        let usable = tokens.filter { !$0.content.isEmpty }
        self.tokens = usable
        var candidates = [[Int]](repeating: [], count: 256)
        for (index, token) in usable.enumerated() { candidates[Int(token.content[0])].append(index) }
        for b in 0..<256 { candidates[b].sort { usable[$0].content.count > usable[$1].content.count } }
        self.candidates = candidates
        var ids: [[UInt8]: Int32] = [:]
        for token in usable { ids[token.content] = token.id }
        self.ids = ids
    }

    func id(of content: [UInt8]) -> Int32? { ids[content] }

    /// `text` as added tokens and the non-empty text between them, in order.
    func split(_ text: [UInt8]) -> [Segment] {
        if tokens.isEmpty || text.isEmpty { return text.isEmpty ? [] : [.text(0..<text.count)] }
        var segments: [Segment] = []
        var startOffset = 0
        var position = 0
        while position < text.count {
            var matched: Int?
            for index in candidates[Int(text[position])] {
                let content = tokens[index].content
                if position + content.count <= text.count, text[position..<(position + content.count)].elementsEqual(content) {
                    matched = index
                    break
                }
            }
            guard let index = matched else {
                position += 1
                continue
            }
            let token = tokens[index]
            var start = position
            var stop = position + token.content.count
            position = stop
            if token.singleWord {
                let startSpace = start == 0 || !Self.endsWithWordCharacter(text, before: start)
                let stopSpace = stop == text.count || !Self.startsWithWordCharacter(text, at: stop)
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip { start = max(Self.trailingWhitespaceStart(text, before: start), startOffset) }
            if token.rstrip { stop = Self.leadingWhitespaceEnd(text, from: stop) }
            if startOffset < start { segments.append(.text(startOffset..<start)) }
            segments.append(.token(token.id))
            startOffset = stop
            position = max(position, stop)
        }
        if startOffset < text.count { segments.append(.text(startOffset..<text.count)) }
        return segments
    }

    // Rust's char::is_alphanumeric (Alphabetic or Numeric) and char::is_whitespace (White_Space).
    private static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        let p = scalar.properties
        if p.isAlphabetic { return true }
        switch p.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    private static func scalars(_ bytes: ArraySlice<UInt8>) -> [Unicode.Scalar] {
        Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
    }

    private static func endsWithWordCharacter(_ text: [UInt8], before end: Int) -> Bool {
        guard let last = scalars(text[..<end]).last else { return false }
        return isWordCharacter(last)
    }

    private static func startsWithWordCharacter(_ text: [UInt8], at start: Int) -> Bool {
        guard let first = scalars(text[start...]).first else { return false }
        return isWordCharacter(first)
    }

    private static func trailingWhitespaceStart(_ text: [UInt8], before end: Int) -> Int {
        var offset = end
        for scalar in scalars(text[..<end]).reversed() {
            guard scalar.properties.isWhitespace else { break }
            offset -= String(Character(scalar)).utf8.count
        }
        return offset
    }

    private static func leadingWhitespaceEnd(_ text: [UInt8], from start: Int) -> Int {
        var offset = start
        for scalar in scalars(text[start...]) {
            guard scalar.properties.isWhitespace else { break }
            offset += String(Character(scalar)).utf8.count
        }
        return offset
    }
}
