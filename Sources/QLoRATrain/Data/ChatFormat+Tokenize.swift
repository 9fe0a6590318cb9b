// Token ids and labels of a rendered conversation, equal to tokenizing the whole rendered string
// (as Hugging Face `apply_chat_template(tokenize=True)` does) with the loss on the trained segments.
import QLoRAIO
import QLoRATokenizer
import QLoRAModel

extension ChatFormat {
    /// The id of the template's end-of-turn token in `tokenizer`.
    /// - Throws: `DataError.chatTemplate` when the tokenizer does not encode it as one token (the
    ///   template does not belong to this model).
    func endOfTurnId(in tokenizer: Tokenizer) throws(DataError) -> Int32 {
        let ids = tokenizer.encode(template.endOfTurn, addSpecialTokens: false)
        guard ids.count == 1 else {
            throw .chatTemplate(path: tokenizer.path, reason: "the tokenizer has no single token for \(template.endOfTurn), which ends every \(template.rawValue) turn")
        }
        return ids[0]
    }

    /// Tokens (no special tokens added: the rendered text holds them) and labels of `segments`.
    ///
    /// Tokenizing segment by segment would differ from the whole string where the text across a
    /// boundary pre-tokenizes differently (SmolLM2: "assistant\n" + "\n\nHi" gives "\n\n", "\n",
    /// "Hi" as a whole but "\n" + "\n", "\n", "Hi" apart). So the text is cut only after each
    /// trained segment, which ends with the end-of-turn special token: the tokenizer splits on
    /// special tokens before anything else, so the pieces tokenize independently. Each piece after
    /// the first is encoded behind that token, which is then dropped, so it is not taken for the
    /// start of the text (Metaspace's "first" prefix). Within a piece (untrained text, then a
    /// trained segment), the tokens past the longest common prefix with the untrained text's
    /// own tokens are trained: a token that straddles the boundary carries content and is trained,
    /// as Hugging Face's `return_assistant_tokens_mask` (char_to_token of the span start) does.
    /// - Parameter endOfTurnId: `endOfTurnId(in: tokenizer)`.
    /// - Precondition: every trained segment ends with `template.endOfTurn`.
    func tokenize(_ segments: [Segment], with tokenizer: Tokenizer, endOfTurnId: Int32) -> (tokens: [Int32], labels: [Int32]) {
        var tokens: [Int32] = [], labels: [Int32] = []
        var afterTurn = false
        var untrained = ""
        func encode(_ text: String) -> ArraySlice<Int32> {
            guard afterTurn else { return tokenizer.encode(text, addSpecialTokens: false)[...] }
            let ids = tokenizer.encode(template.endOfTurn + text, addSpecialTokens: false)
            assert(ids.first == endOfTurnId)
            return ids.dropFirst()
        }
        for segment in segments {
            guard segment.trainable else {
                untrained += segment.text
                continue
            }
            precondition(segment.text.hasSuffix(template.endOfTurn), "a trained segment must end its turn")
            let head = encode(untrained), piece = encode(untrained + segment.text)
            let shared = zip(head, piece).prefix { $0 == $1 }.count
            tokens += piece
            labels += repeatElement(TokenBatch.ignore, count: shared)
            labels += piece.dropFirst(shared)
            untrained = ""
            afterTurn = true
        }
        let tail = encode(untrained)
        tokens += tail
        labels += repeatElement(TokenBatch.ignore, count: tail.count)
        return (tokens, labels)
    }
}
