// The seam between a frozen linear layer and what is trained beside it. The base path
// (FrozenMatmul) never changes; LoRA implements this protocol, and so can DoRA, AdaLoRA or GLoRA.

/// Scratch and randomness an adapter may use during one forward or backward call.
public struct AdapterContext {
    /// At least `rows * max(in features, out features, rank)` floats, twice (`scratch`, `scratch2`).
    public var scratch: UnsafeMutablePointer<Float>
    public var scratch2: UnsafeMutablePointer<Float>
    /// Seeds the dropout mask of this call; the backward must get the forward's seed.
    public var dropoutSeed: UInt64
    /// False during evaluation: no dropout.
    public var training: Bool

    public init(scratch: UnsafeMutablePointer<Float>, scratch2: UnsafeMutablePointer<Float>, dropoutSeed: UInt64, training: Bool) {
        self.scratch = scratch
        self.scratch2 = scratch2
        self.dropoutSeed = dropoutSeed
        self.training = training
    }
}

/// A trainable update added to a frozen linear layer's output, `y = x W^T + delta(x)`.
public protocol LinearAdapter: AnyObject {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// Floats per row the forward saves for the backward (in a buffer the model provides).
    var savedWidth: Int { get }
    /// The trainable tensors, in a fixed order (PEFT names are given by the owner).
    var parameters: [AdapterTensor] { get }

    /// `y += delta(x)`: x (rows, inFeatures), y (rows, outFeatures); writes `saved` (rows, savedWidth).
    func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, saved: UnsafeMutablePointer<Float>,
                 rows: Int, context: AdapterContext)
    /// Writes `saved` exactly as `forward` would, without touching y (gradient checkpointing).
    func recomputeSaved(_ x: UnsafePointer<Float>, saved: UnsafeMutablePointer<Float>, rows: Int, context: AdapterContext)
    /// Given dY, ACCUMULATES the parameter gradients and `dx += d delta / dx`. x is the forward's input.
    func backward(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                  saved: UnsafePointer<Float>, rows: Int, context: AdapterContext)
}

/// One trainable tensor of an adapter: its role ("lora_A"), shape, values and gradient (same layout).
public struct AdapterTensor: @unchecked Sendable {
    public var role: String
    public var shape: [Int]
    public var values: UnsafeMutablePointer<Float>
    public var gradient: UnsafeMutablePointer<Float>
    /// False for tensors the adapter keeps frozen (LoRA-FA's A): no gradient is computed.
    public var trainable: Bool
    public var count: Int { shape.reduce(1, *) }
}
