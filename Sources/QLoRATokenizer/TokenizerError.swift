// Why a tokenizer.json could not be loaded. Every case names the file; encode and decode never fail.
import QLoRAIO

/// A tokenizer file that cannot be read, is not valid JSON, or uses a feature `Tokenizer` does not
/// implement exactly (refused rather than tokenized differently from Hugging Face `tokenizers`).
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file cannot be opened or read.
    case unreadable(path: String, reason: String)
    /// Not JSON: a syntax error at byte `offset` (a truncated file ends with "the file ends here").
    case badJSON(path: String, offset: Int, reason: String)
    /// Valid JSON but not a valid tokenizer: `field` (a JSON path such as `model.merges[3]`) is
    /// missing, of the wrong type or inconsistent.
    case invalid(path: String, field: String, reason: String)
    /// A tokenizers feature outside what `Tokenizer` implements.
    case unsupported(path: String, feature: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "\(path): cannot read the tokenizer file: \(reason)"
        case .badJSON(let path, let offset, let reason):
            return "\(path): not valid JSON at byte \(offset): \(reason); the file is damaged or not a tokenizer.json (copy it again from the model repository)"
        case .invalid(let path, let field, let reason):
            return "\(path): not a valid Hugging Face tokenizer.json: \(field) \(reason)"
        case .unsupported(let path, let feature):
            return "\(path): unsupported tokenizer feature: \(feature). Supported: BPE models with ByteLevel / Split (GPT-2, Llama-3, Qwen2 regexes) / Digits / Metaspace pre-tokenizers, Prepend / Replace normalizers, TemplateProcessing / ByteLevel post-processors, ByteLevel / Replace / ByteFallback / Fuse / Strip / Metaspace decoders"
        }
    }
}
