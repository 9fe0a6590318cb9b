// A Llama-family decoder's architecture, as the model computes it: sizes, norms, rotary embedding.
// Decoding it from a Hugging Face config.json (and the Hugging Face tensor names) is the IO edge,
// in ModelShape+Config.swift.

/// Shapes of a Llama-family decoder.
public struct ModelShape: Sendable, Equatable {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var tiedEmbeddings: Bool
    public var attentionBias: Bool
    /// Llama's `mlp_bias`: biases on gate, up and down projections.
    public var mlpBias: Bool
    public var rmsNormEps: Float
    public var rope: RoPEConfig
}

/// Rotary position embedding parameters (transformers `modeling_rope_utils`).
public struct RoPEConfig: Sendable, Equatable {
    public enum Scaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor` (transformers "linear").
        case linear(factor: Double)
        /// Llama 3.1 frequency-dependent scaling (transformers `_compute_llama3_parameters`).
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int)
    }

    public var theta: Double
    public var scaling: Scaling

    public init(theta: Double, scaling: Scaling = .none) {
        self.theta = theta
        self.scaling = scaling
    }
}
