// The NF4 data type of QLoRA as bitsandbytes defines it: the 16-value code table, the bucket
// boundaries used to quantize, and the block layout constants. Byte layout: FORMAT.md.

/// NormalFloat4 constants (bitsandbytes `functional.get_4bit_type("nf4")`, QLoRA paper appendix E).
public enum NF4 {
    /// Code table, index = nibble value. Sorted; code[7] == 0.
    public static let code: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    /// `code` at a fixed address for C kernels (allocated once, never freed).
    nonisolated(unsafe) public static let codePointer: UnsafePointer<Float> = permanentCopy(code)

    /// Bucket boundaries `(code[i] + code[i+1]) / 2` in Float32 (bnb `_get_4bit_quantize_bounds`).
    /// A scaled value `s` gets the number of boundaries strictly below it (`torch.bucketize`,
    /// right=False), so a value exactly on a boundary takes the lower code.
    public static let boundaries: [Float] = (0..<15).map { (code[$0] + code[$0 + 1]) / 2 }

    /// bitsandbytes' default and the only block size transformers writes for NF4.
    public static let defaultBlockSize = 64

    /// The nibble of an all-zero value (and of the padding element of an odd count).
    public static let zeroNibble: UInt8 = 7

    /// Smallest absmax used as a divisor (bnb clamps to 1e-38 before taking the reciprocal).
    public static let minimumAbsmax: Float = 1e-38
}


/// A copy of `values` at an address that stays valid for the life of the process.
func permanentCopy(_ values: [Float]) -> UnsafePointer<Float> {
    let pointer = UnsafeMutablePointer<Float>.allocate(capacity: values.count)
    pointer.initialize(from: values, count: values.count)
    return UnsafePointer(pointer)
}
