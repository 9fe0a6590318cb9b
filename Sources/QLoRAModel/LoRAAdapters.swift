// Every LoRA adapter of a model, their parameters and gradients each in one contiguous arena (so
// the optimizer sees two flat vectors), PEFT's initialisation and PEFT's tensor names.
import Foundation
import QLoRAIO
import QLoRAKernels

/// What to train and how (PEFT `LoraConfig` fields).
public struct LoRAConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    /// rsLoRA: scale alpha / sqrt(r) instead of alpha / r.
    public var useRSLoRA: Bool
    public var targets: Set<Projection>
    /// LoRA-FA: A stays at its initial value; only B is trained.
    public var freezeA: Bool
    public var seed: UInt64

    public init(rank: Int = 16, alpha: Float = 32, dropout: Float = 0, useRSLoRA: Bool = false,
                targets: Set<Projection> = Set(Projection.allCases), freezeA: Bool = false, seed: UInt64 = 0) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.useRSLoRA = useRSLoRA
        self.targets = targets
        self.freezeA = freezeA
        self.seed = seed
    }

    /// The targets in Hugging Face's projection order (the order of the adapters' tensors).
    public var orderedTargets: [Projection] { Projection.allCases.filter(targets.contains) }

    /// PEFT `scaling`: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
    public var scale: Float { useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
}

public final class LoRAAdapters: @unchecked Sendable {
    public let config: LoRAConfig
    /// adapters[layer][projection]
    public let adapters: [[Projection: LoRA]]
    /// All parameters, then all gradients, in the order of `tensors`.
    public let parameterCount: Int
    public let values: UnsafeMutablePointer<Float>
    public let gradients: UnsafeMutablePointer<Float>
    /// PEFT key of each tensor ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), in arena order.
    public let tensors: [(key: String, tensor: AdapterTensor)]

    /// Creates the adapters with PEFT's default initialisation: A ~ kaiming_uniform(a = sqrt(5)),
    /// i.e. U(-1/sqrt(in), 1/sqrt(in)) (torch.nn.init), drawn from SplitMix64(seed); B = 0.
    public init(shape: ModelShape, config: LoRAConfig) {
        precondition(config.rank > 0)
        self.config = config
        let ordered = config.orderedTargets
        parameterCount = Self.parameterCount(shape: shape, config: config)
        values = .allocate(capacity: parameterCount)
        gradients = .allocate(capacity: parameterCount)
        values.initialize(repeating: 0, count: parameterCount)
        gradients.initialize(repeating: 0, count: parameterCount)
        var random = SplitMix64(seed: config.seed)
        var offset = 0
        var adapters: [[Projection: LoRA]] = []
        var tensors: [(String, AdapterTensor)] = []
        for layer in 0..<shape.layers {
            var row: [Projection: LoRA] = [:]
            for projection in ordered {
                let (out, inFeatures) = projection.features(in: shape)
                let a = values + offset, dA = gradients + offset
                offset += config.rank * inFeatures
                let b = values + offset, dB = gradients + offset
                offset += out * config.rank
                let bound = 1 / Float(inFeatures).squareRoot()
                for i in 0..<config.rank * inFeatures {
                    a[i] = (Float(random.next() >> 40) * 0x1p-24 * 2 - 1) * bound
                }
                let lora = LoRA(inFeatures: inFeatures, outFeatures: out, rank: config.rank, scale: config.scale,
                                dropout: config.dropout, freezeA: config.freezeA, a: a, b: b, dA: dA, dB: dB)
                row[projection] = lora
                let prefix = "base_model.model.model.layers.\(layer).\(projection.modulePath)."
                for tensor in lora.parameters { tensors.append((prefix + tensor.role + ".weight", tensor)) }
            }
            adapters.append(row)
        }
        self.adapters = adapters
        self.tensors = tensors
    }

    /// Values of all A and B matrices of adapters `config` puts on a model of `shape`.
    public static func parameterCount(shape: ModelShape, config: LoRAConfig) -> Int {
        config.orderedTargets.reduce(0) { total, p in total + config.rank * (p.features(in: shape).out + p.features(in: shape).in) } * shape.layers
    }

    /// Values training updates (the length of `trainableRanges`): all of them, or with LoRA-FA the Bs only.
    public static func trainableCount(shape: ModelShape, config: LoRAConfig) -> Int {
        guard config.freezeA else { return parameterCount(shape: shape, config: config) }
        return config.orderedTargets.reduce(0) { $0 + config.rank * $1.features(in: shape).out } * shape.layers
    }

    deinit {
        values.deallocate()
        gradients.deallocate()
    }

    public func zeroGradients() { gradients.update(repeating: 0, count: parameterCount) }

    /// Index ranges of `values` (and `gradients`) that training updates, ascending, adjacent
    /// tensors merged: everything but frozen tensors (LoRA-FA's A). What the optimizer pages.
    public var trainableRanges: [Range<Int>] {
        var ranges: [Range<Int>] = []
        for (_, tensor) in tensors where tensor.trainable {
            let start = values.distance(to: tensor.values)
            if let last = ranges.last, last.upperBound == start {
                ranges[ranges.count - 1] = last.lowerBound..<start + tensor.count
            } else {
                ranges.append(start..<start + tensor.count)
            }
        }
        return ranges
    }
}
