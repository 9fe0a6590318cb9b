// The trainer's view of its data: the tokenizer and chat format of the model, the training stream
// (shuffled, packed, endless over epochs), the validation sequences (a file, or a held-out share
// of the training rows) and the prompts of the before/after samples.
import Foundation
import QLoRAIO
import QLoRATokenizer
import QLoRAModel

final class TrainingData {
    let train: DataStream
    let valid: DataStream?
    let trainSummary: DataSummary
    let validSummary: DataSummary?
    /// Where the validation rows come from: a file, or "held out of <train file>".
    let validSource: String
    private let tokenizer: Tokenizer?
    private let chat: ChatFormat?
    /// Tokens that end a sampled answer: EOS and the template's end-of-turn.
    let stopTokens: Set<Int32>

    var trainSequenceCount: Int { train.count }
    var hasValidation: Bool { (valid?.count ?? 0) > 0 }
    var canSample: Bool { tokenizer != nil }

    private init(train: DataStream, valid: DataStream?, trainSummary: DataSummary, validSummary: DataSummary?, validSource: String,
                 tokenizer: Tokenizer?, chat: ChatFormat?) {
        self.train = train
        self.valid = valid
        self.trainSummary = trainSummary
        self.validSummary = validSummary
        self.validSource = validSource
        self.tokenizer = tokenizer
        self.chat = chat
        var stops = Set<Int32>()
        if let eos = tokenizer?.eosTokenId { stops.insert(eos) }
        if let chat, let id = try? tokenizer.map({ tokenizer throws(DataError) in try chat.endOfTurnId(in: tokenizer) }) { stops.insert(id) }
        stopTokens = stops
    }

    static func load(config: TrainConfig, modelDirectory: String, vocabularySize: Int) throws(TrainError) -> TrainingData {
        var tokenizer: Tokenizer?
        let tokenizerPath = modelDirectory + "/tokenizer.json"
        if FileManager.default.fileExists(atPath: tokenizerPath) {
            do { tokenizer = try Tokenizer(path: tokenizerPath) } catch { throw .data("\(error)") }
        }
        var override: ChatTemplate?
        if config.chatTemplate != "auto" {
            guard let template = ChatTemplate(rawValue: config.chatTemplate) else {
                throw .data("--chat-template \(config.chatTemplate): expected auto, \(ChatTemplate.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            override = template
        }
        let chat = try? ChatFormat(modelDirectory: modelDirectory, override: override)
        let reader = DatasetReader(tokenizer: tokenizer, vocabularySize: vocabularySize, chatTemplate: override,
                                   maxTokens: config.seqLen, truncate: config.truncate, skipBadRows: config.skipBadRows)
        let packer = SequencePacker(seqLen: config.seqLen, padTokenId: tokenizer?.eosTokenId ?? 0, packing: config.packing)
        do {
            let trainSet = try reader.read(config.trainData)
            var trainExamples = trainSet.examples
            var validExamples: [TrainingExample] = []
            var validSource = "none"
            var validSkipped = 0, validTruncated = 0
            if let validPath = config.validData {
                let validSet = try reader.read(validPath)
                validExamples = validSet.examples
                (validSkipped, validTruncated, validSource) = (validSet.skipped.count, validSet.truncated, validPath)
            } else if config.validFraction > 0 {
                let split = DataSplit(trainExamples, validFraction: config.validFraction, seed: config.seed)
                (trainExamples, validExamples) = (split.train, split.valid)
                validSource = "held out of \(config.trainData)"
            }
            let train = DataStream(examples: trainExamples, packer: packer, shuffle: config.shuffle, seed: config.seed)
            let valid = validExamples.isEmpty ? nil : DataStream(examples: validExamples, packer: packer, shuffle: false, seed: config.seed)
            return TrainingData(
                train: train, valid: valid,
                trainSummary: DataSummary(stream: train, skipped: trainSet.skipped.count, truncated: trainSet.truncated),
                validSummary: valid.map { DataSummary(stream: $0, skipped: validSkipped, truncated: validTruncated) },
                validSource: validSource, tokenizer: tokenizer, chat: chat)
        } catch {
            throw .data(error.description)
        }
    }

    /// `rows` training sequences from global position `position` (wrapping over epochs).
    func trainBatch(position: Int, rows: Int) -> TokenBatch { train.batch(from: position, rows: rows) }

    /// Target tokens of the `rows` training sequences from `position`, without building the batch.
    func trainTargetCount(position: Int, rows: Int) -> Int { train.targetCount(from: position, count: rows) }

    /// Mean cross-entropy over every target token of the validation sequences (token-weighted),
    /// in batches of the model's rows (the last filled with rows that have no target); nil when
    /// they have no target, or when `proceed(done, total)` (asked after each batch but the last)
    /// answers false.
    func validationLoss(model: LlamaModel, proceed: (_ done: Int, _ total: Int) -> Bool = { _, _ in true }) -> Double? {
        guard let valid else { return nil }
        let rows = model.dims.B
        var total = 0.0, count = 0
        let batches = (valid.count + rows - 1) / rows
        for (index, start) in stride(from: 0, to: valid.count, by: rows).enumerated() {
            if index > 0 && !proceed(index, batches) { return nil }
            let sequences = valid.sequences(from: start, count: min(rows, valid.count - start))
            var tokens: [Int32] = [], targets: [Int32] = [], ids: [Int32] = []
            for sequence in sequences {
                tokens += sequence.tokens
                targets += sequence.targets
                ids += sequence.sequenceIds
            }
            let padding = (rows - sequences.count) * valid.seqLen
            tokens += repeatElement(0, count: padding)
            targets += repeatElement(TokenBatch.ignore, count: padding)
            ids += repeatElement(0, count: padding)
            let batch = TokenBatch(batch: rows, seqLen: valid.seqLen, tokens: tokens, targets: targets, sequenceIds: ids)
            let targetCount = batch.targetCount
            guard targetCount > 0 else { continue }
            total += Double(model.loss(batch)) * Double(targetCount)
            count += targetCount
        }
        return count > 0 ? total / Double(count) : nil
    }

    /// The prompt as the model sees it before its answer: the chat template's user turn and the
    /// assistant header when the model has a template, else the text with the tokenizer's special tokens.
    func promptTokens(_ prompt: String) -> [Int32] {
        guard let tokenizer else { return [] }
        guard let chat, let segments = try? chat.render([ChatMessage(.user, prompt)], addGenerationPrompt: true) else {
            return tokenizer.encode(prompt, addSpecialTokens: true)
        }
        return tokenizer.encode(segments.map(\.text).joined(), addSpecialTokens: false)
    }

    func decode(_ tokens: [Int32]) -> String { tokenizer?.decode(tokens, skipSpecialTokens: true) ?? "" }
}
