// Decoding ids to text as tokenizers' `Tokenizer::decode` does: ids -> tokens (unknown ids dropped,
// special added tokens dropped on request), then the decoder chain (tokenizers/src/decoders/*.rs
// `decode_chain`), then the pieces joined ("" with a decoder, " " without).
import QLoRAIO

/// One decoder of the chain; every step maps a list of token strings (UTF-8) to a new list.
enum DecoderStep: Sendable {
    /// GPT-2 alphabet -> bytes per token (a token with a character outside the alphabet keeps its
    /// own UTF-8), all joined and decoded leniently (U+FFFD per maximal invalid subpart).
    case byteLevel
    /// Every occurrence of `pattern` -> `content`, per token.
    case replace(pattern: [UInt8], content: [UInt8])
    /// Runs of `<0xNN>` tokens -> their bytes as text (one U+FFFD per byte if not valid UTF-8).
    case byteFallback
    /// All tokens joined into one.
    case fuse
    /// Up to `start` leading and `stop` trailing `content` characters removed per token.
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    /// `replacement` -> " ", except that the first token drops it unless the scheme is "never".
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme)
}

extension Tokenizer {
    /// `tokenizers`' `decode(ids, skip_special_tokens)`.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard id >= 0, Int(id) < idToToken.count, let token = idToToken[Int(id)] else { continue }
            if skipSpecialTokens && specialIds.contains(id) { continue }
            tokens.append(token)
        }
        guard let decoders else {
            return String(decoding: Array(tokens.joined(separator: [0x20])), as: UTF8.self)
        }
        for step in decoders { tokens = Self.apply(step, tokens) }
        return String(decoding: Array(tokens.joined()), as: UTF8.self)
    }

    private static let byteOfCharacter: [UInt32: UInt8] = {
        var table: [UInt32: UInt8] = [:]
        for (b, scalar) in ByteLevelAlphabet.characters.enumerated() { table[scalar.value] = UInt8(b) }
        return table
    }()

    static func apply(_ step: DecoderStep, _ tokens: [[UInt8]]) -> [[UInt8]] {
        switch step {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                var mapped: [UInt8] = []
                mapped.reserveCapacity(token.count)
                var ok = true
                for scalar in String(decoding: token, as: UTF8.self).unicodeScalars {
                    guard let b = byteOfCharacter[scalar.value] else { ok = false; break }
                    mapped.append(b)
                }
                bytes.append(contentsOf: ok ? mapped : token)
            }
            return [Array(String(decoding: bytes, as: UTF8.self).utf8)]
        case .replace(let pattern, let content):
            return tokens.map { replaceAll($0, pattern, content) }
        case .byteFallback:
            var out: [[UInt8]] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if String(validating: pending, as: UTF8.self) != nil {
                    out.append(pending)
                } else {
                    for _ in pending { out.append(Array("\u{FFFD}".utf8)) }
                }
                pending = []
            }
            for token in tokens {
                if let byte = fallbackByte(token) {
                    pending.append(byte)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [Array(tokens.joined())]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let scalars = Array(String(decoding: token, as: UTF8.self).unicodeScalars)
                var startCut = 0
                for i in 0..<min(start, scalars.count) {
                    if scalars[i] == content { startCut = i + 1 } else { break }
                }
                var stopCut = scalars.count
                for i in 0..<min(stop, scalars.count) {
                    let index = scalars.count - i - 1
                    if scalars[index] == content { stopCut = index } else { break }
                }
                guard startCut < stopCut else { return [] }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars[startCut..<stopCut])
                return Array(String(view).utf8)
            }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { index, token in
                var view = String.UnicodeScalarView()
                for scalar in String(decoding: token, as: UTF8.self).unicodeScalars {
                    if scalar == replacement {
                        if index == 0 && scheme != .never { continue }
                        view.append(" ")
                    } else {
                        view.append(scalar)
                    }
                }
                return Array(String(view).utf8)
            }
        }
    }

    /// The byte of a `<0xNN>` token (exactly 6 bytes; `u8::from_str_radix(.., 16)` of the two
    /// middle characters), else nil.
    private static func fallbackByte(_ token: [UInt8]) -> UInt8? {
        guard token.count == 6, token[0] == UInt8(ascii: "<"), token[1] == UInt8(ascii: "0"),
              token[2] == UInt8(ascii: "x"), token[5] == UInt8(ascii: ">") else { return nil }
        let digits = String(decoding: token[3..<5], as: UTF8.self)
        if digits.hasPrefix("-") { return nil }
        return UInt8(digits.hasPrefix("+") ? String(digits.dropFirst()) : digits, radix: 16)
    }
}
