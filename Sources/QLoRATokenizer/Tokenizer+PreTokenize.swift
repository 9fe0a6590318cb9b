// Normalizers and pre-tokenizers of Hugging Face tokenizers, on UTF-8 bytes. The Split regexes of
// GPT-2, Llama-3 and Qwen2 are matched by hand (no regex engine) with Oniguruma's semantics as
// tokenizers uses it: leftmost match, first alternative wins, greedy with backtracking; \s is
// Unicode White_Space, \p{L} / \p{N} the general categories L* / N*. Other regexes are refused.
import QLoRAIO

/// One step of `normalizer` (applied to each piece of text between added tokens).
enum NormalizerStep: Sendable {
    /// `Prepend`: `text` before a non-empty piece.
    case prepend([UInt8])
    /// `Replace` with a `String` pattern: every non-overlapping occurrence, left to right.
    case replace(pattern: [UInt8], content: [UInt8])
}

/// One step of `pre_tokenizer`.
enum PreTokenizerStep: Sendable {
    /// `Split` with `behavior: Isolated`, `invert: false` on one of the known regexes.
    case split(SplitPattern)
    /// `Digits`: digits (\p{N}) isolated one by one, or as runs.
    case digits(individual: Bool)
    /// `Metaspace`: " " -> replacement, prepended per scheme, split before each replacement if `split`.
    case metaspace(replacement: [UInt8], prepend: PrependScheme, split: Bool)
    /// `ByteLevel`: optional " " prefix, GPT-2's regex when `useRegex`; the byte-to-alphabet mapping
    /// itself is done by the model input step (this is always the last step).
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
}

enum PrependScheme: Sendable { case always, first, never }

/// The Split regexes implemented (their exact text in tokenizer.json).
enum SplitPattern: Sendable {
    case gpt2, llama3, qwen2

    /// GPT-2's (tokenizers pre_tokenizers/byte_level.rs), Llama-3's and Qwen2's (transformers
    /// PRETOKENIZE_REGEX in models/llama/convert_llama_weights_to_hf.py, models/qwen2/tokenization_qwen2.py).
    static let regexes: [(String, SplitPattern)] = [
        (#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#, .gpt2),
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, .llama3),
        (#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#, .qwen2),
    ]
}

extension Tokenizer {
    // MARK: Normalizer

    static func normalize(_ piece: [UInt8], _ steps: [NormalizerStep]) -> [UInt8] {
        var text = piece
        for step in steps {
            switch step {
            case .prepend(let prefix):
                if !text.isEmpty { text = prefix + text }
            case .replace(let pattern, let content):
                text = replaceAll(text, pattern, content)
            }
        }
        return text
    }

    static func replaceAll(_ text: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
        guard !pattern.isEmpty, text.count >= pattern.count else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = 0
        let first = pattern[0]
        while i < text.count {
            if text[i] == first, i + pattern.count <= text.count, text[i..<(i + pattern.count)].elementsEqual(pattern) {
                out.append(contentsOf: content)
                i += pattern.count
            } else {
                out.append(text[i])
                i += 1
            }
        }
        return out
    }

    // MARK: Pre-tokenizer

    /// Splits `piece` into the words the model encodes. `atStart`: the piece begins at offset 0
    /// of the original text (Metaspace's "first" scheme).
    static func preTokenize(_ piece: [UInt8], atStart: Bool, _ steps: [PreTokenizerStep]) -> [[UInt8]] {
        var pieces = [piece]
        for step in steps {
            var next: [[UInt8]] = []
            next.reserveCapacity(pieces.count)
            for (index, p) in pieces.enumerated() {
                switch step {
                case .split(let pattern):
                    splitRegex(p, pattern, into: &next)
                case .digits(let individual):
                    splitDigits(p, individual: individual, into: &next)
                case .metaspace(let replacement, let prepend, let split):
                    var text = replaceAll(p, [0x20], replacement)
                    let startsWith = text.count >= replacement.count && text[0..<replacement.count].elementsEqual(replacement)
                    switch prepend {
                    case .always: if !startsWith { text = replacement + text }
                    case .first: if !startsWith && atStart && index == 0 { text = replacement + text }
                    case .never: break
                    }
                    if split { splitBefore(text, replacement, into: &next) } else if !text.isEmpty { next.append(text) }
                case .byteLevel(let addPrefixSpace, let useRegex):
                    var text = p
                    if addPrefixSpace && text.first != 0x20 { text.insert(0x20, at: 0) }
                    if useRegex { splitRegex(text, .gpt2, into: &next) } else if !text.isEmpty { next.append(text) }
                }
            }
            pieces = next
        }
        return pieces
    }

    /// Metaspace `split`: a new piece starts at each `replacement` (MergedWithNext).
    private static func splitBefore(_ text: [UInt8], _ replacement: [UInt8], into out: inout [[UInt8]]) {
        var start = 0
        var i = 0
        while i < text.count {
            if i > start, i + replacement.count <= text.count, text[i..<(i + replacement.count)].elementsEqual(replacement) {
                out.append(Array(text[start..<i]))
                start = i
                i += replacement.count
            } else {
                i += 1
            }
        }
        if start < text.count { out.append(Array(text[start...])) }
    }

    // Scalar classes for the regexes.
    private static let letter: UInt8 = 1, number: UInt8 = 2, space: UInt8 = 4, newline: UInt8 = 8

    @inline(__always)
    private static func classify(_ v: UInt32) -> UInt8 {
        if v < 0x80 {
            switch v {
            case 0x0A, 0x0D: return space | newline
            case 0x09, 0x0B, 0x0C, 0x20: return space
            case 0x30...0x39: return number
            case 0x41...0x5A, 0x61...0x7A: return letter
            default: return 0
            }
        }
        guard let scalar = Unicode.Scalar(v) else { return 0 }
        let properties = scalar.properties
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return properties.isWhitespace ? space : 0
        }
    }

    /// Decodes valid UTF-8 into scalars, their classes and start offsets (offsets has one extra
    /// entry, the end).
    private static func scan(_ text: [UInt8]) -> (scalars: [UInt32], classes: [UInt8], offsets: [Int]) {
        var scalars: [UInt32] = [], classes: [UInt8] = [], offsets: [Int] = []
        scalars.reserveCapacity(text.count)
        classes.reserveCapacity(text.count)
        offsets.reserveCapacity(text.count + 1)
        var i = 0
        while i < text.count {
            let (v, length) = BPEModel.decodeScalar(text, at: i)
            scalars.append(v)
            classes.append(classify(v))
            offsets.append(i)
            i += length
        }
        offsets.append(text.count)
        return (scalars, classes, offsets)
    }

    private static func splitDigits(_ text: [UInt8], individual: Bool, into out: inout [[UInt8]]) {
        let (_, classes, offsets) = scan(text)
        var start = 0
        var k = 0
        let n = classes.count
        while k < n {
            var end = k + 1
            if classes[k] == number {
                if !individual { while end < n && classes[end] == number { end += 1 } }
            } else {
                while end < n && classes[end] != number { end += 1 }
            }
            out.append(Array(text[offsets[start]..<offsets[end]]))
            start = end
            k = end
        }
    }

    /// `Split(pattern, Isolated)`: every match is a piece, and so is every gap between matches
    /// (the three patterns match at every position, so there are none).
    static func splitRegex(_ text: [UInt8], _ pattern: SplitPattern, into out: inout [[UInt8]]) {
        if text.isEmpty { return }
        let (scalars, classes, offsets) = scan(text)
        let n = scalars.count
        var i = 0
        while i < n {
            let end = matchEnd(scalars, classes, at: i, pattern)
            out.append(Array(text[offsets[i]..<offsets[end]]))
            i = end
        }
    }

    /// Where the pattern's match starting at scalar `i` ends (> i; every position matches).
    private static func matchEnd(_ s: [UInt32], _ c: [UInt8], at i: Int, _ pattern: SplitPattern) -> Int {
        let n = s.count
        func run(_ from: Int, _ mask: UInt8) -> Int {
            var j = from
            while j < n && c[j] & mask != 0 { j += 1 }
            return j
        }
        func runOther(_ from: Int) -> Int {
            var j = from
            while j < n && c[j] & (letter | number | space) == 0 { j += 1 }
            return j
        }
        func isOther(_ k: Int) -> Bool { k < n && c[k] & (letter | number | space) == 0 }
        func isLetter(_ k: Int) -> Bool { k < n && c[k] & letter != 0 }
        let caseInsensitive = pattern != .gpt2

        // 's|'t|'re|'ve|'m|'ll|'d, case-insensitively for Llama-3 / Qwen2 (Oniguruma's simple
        // case folding: 'ſ' (U+017F) folds to 's').
        if s[i] == 0x27, i + 1 < n {
            func lower(_ v: UInt32) -> UInt32 {
                guard caseInsensitive else { return v }
                if v >= 0x41 && v <= 0x5A { return v + 0x20 }
                if v == 0x17F { return 0x73 }
                return v
            }
            let a = lower(s[i + 1])
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }   // s t m d
            if i + 2 < n {
                let b = lower(s[i + 2])
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return i + 3 }   // re ve ll
            }
        }
        let cls = c[i]
        switch pattern {
        case .gpt2:
            // ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`
            let start = s[i] == 0x20 && i + 1 < n && c[i + 1] & space == 0 ? i + 1 : i
            let first = c[start]
            if first & letter != 0 { return run(start, letter) }
            if first & number != 0 { return run(start, number) }
            if first & space == 0 { return runOther(start) }
        case .llama3, .qwen2:
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if cls & letter != 0 { return run(i, letter) }
            if cls & (newline | number) == 0 && isLetter(i + 1) { return run(i + 1, letter) }
            // \p{N}{1,3} (Llama-3) or \p{N} (Qwen2)
            if cls & number != 0 {
                let limit = pattern == .llama3 ? 3 : 1
                var j = i + 1
                while j < n && j - i < limit && c[j] & number != 0 { j += 1 }
                return j
            }
            //  ?[^\s\p{L}\p{N}]+[\r\n]*
            let start = s[i] == 0x20 && isOther(i + 1) ? i + 1 : i
            if isOther(start) {
                var j = runOther(start)
                while j < n && (s[j] == 0x0A || s[j] == 0x0D) { j += 1 }
                return j
            }
            // \s*[\r\n]+: ends after the last CR/LF of the whitespace run.
            let end = run(i, space)
            var k = end - 1
            while k >= i && c[k] & newline == 0 { k -= 1 }
            if k >= i { return k + 1 }
        }
        // \s+(?!\S)|\s+
        let end = run(i, space)
        if end == n || end - i < 2 { return end }
        return end - 1
    }
}
