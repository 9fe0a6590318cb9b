// cos/sin tables of the rotary position embedding, computed in Float32 the way transformers 5
// does (`modeling_rope_utils`: `_compute_default_rope_parameters`, `_compute_llama3_parameters`,
// `_compute_linear_scaling_rope_parameters`; `LlamaRotaryEmbedding.forward`).
import Foundation

public enum RoPETable {
    /// inv_freq[i] = 1 / theta^(2i / D) for i < D/2, then the configured scaling.
    public static func inverseFrequencies(headDim: Int, config: RoPEConfig) -> [Float] {
        let base = Float(config.theta)
        var inverse = (0..<headDim / 2).map { i -> Float in 1 / powf(base, Float(2 * i) / Float(headDim)) }
        switch config.scaling {
        case .none: break
        case .linear(let factor):
            inverse = inverse.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let original):
            let factor = Float(factor), low = Float(low), high = Float(high), original = Float(original)
            let lowWavelength = original / low, highWavelength = original / high
            inverse = inverse.map { frequency in
                let wavelength = 2 * Float.pi / frequency
                let scaled = wavelength > lowWavelength ? frequency / factor : frequency
                guard !(wavelength < highWavelength) && !(wavelength > lowWavelength) else { return scaled }
                let smooth = (original / wavelength - low) / (high - low)
                return (1 - smooth) * scaled / factor + smooth * scaled
            }
        }
        return inverse
    }

    /// cos and sin of position * inv_freq for positions 0..<positions: each (positions, D/2) row-major.
    public static func tables(positions: Int, headDim: Int, config: RoPEConfig) -> (cos: [Float], sin: [Float]) {
        let inverse = inverseFrequencies(headDim: headDim, config: config)
        var cosTable = [Float](repeating: 0, count: positions * inverse.count), sinTable = cosTable
        for p in 0..<positions {
            for (i, frequency) in inverse.enumerated() {
                let angle = Float(p) * frequency
                cosTable[p * inverse.count + i] = cosf(angle)
                sinTable[p * inverse.count + i] = sinf(angle)
            }
        }
        return (cosTable, sinTable)
    }
}
