// Helpers of the kernel tests: named tolerances, seeded inputs, comparison of a fast Float kernel
// with its Double twin, and central differences in Double.
import QLoRAKernels
import _TestSupport

/// An elementwise tolerance `|actual - expected| <= atol + rtol * |expected|`.
struct Tolerance {
    var rtol: Double
    var atol: Double

    /// fp32 forward kernels against their Double twins: a few roundings per output, and sums over
    /// rows or keys accumulated in double.
    static let forward = Tolerance(rtol: 1e-5, atol: 1e-6)
    /// fp32 gradients: longer chains of roundings and cancellations (RMSNorm's mean term,
    /// attention's dP - D_t).
    static let gradient = Tolerance(rtol: 1e-4, atol: 1e-6)
    /// Attention's dq, dk, dv sum up to seqLen * (heads / kvHeads) terms of size ~1 that cancel, so
    /// an element near 0 keeps an absolute fp32 error ~ terms * 6e-8: measured max 2.9e-6 (T <= 40).
    static let attentionGradient = Tolerance(rtol: 1e-4, atol: 1e-5)
    /// Central differences in Double with step `centralDifferenceStep`: truncation error about
    /// step^2 * f''' ~ 1e-10, rounding about 1e-16 * |loss| / step ~ 1e-10.
    static let centralDifference = Tolerance(rtol: 1e-6, atol: 1e-8)
}

let centralDifferenceStep = 1e-5

/// `count` normal(0, std) values from SplitMix64(seed).
func normals(_ count: Int, seed: UInt64, std: Float = 1) -> [Float] {
    var values = [Float](repeating: 0, count: count)
    fillNormal(&values, count: count, seed: seed, std: std)
    return values
}

extension Array where Element == Float {
    var asDouble: [Double] { map(Double.init) }
}

/// Compares a fast kernel's Float output with its Double twin's (rounded to Float, which is far
/// below every tolerance here).
func compare(_ actual: [Float], _ expected: [Double], _ tolerance: Tolerance) -> Comparison {
    compare(actual, expected.map(Float.init), rtol: tolerance.rtol, atol: tolerance.atol)
}

/// Compares two Double arrays (a twin's backward with central differences).
func compare(_ actual: [Double], _ expected: [Double], _ tolerance: Tolerance) -> Comparison {
    compare(actual.map(Float.init), expected, tolerance)
}

/// The gradient of `loss` at `x` by central differences: (loss(x + h e_i) - loss(x - h e_i)) / 2h.
func centralDifferences(_ x: [Double], _ loss: ([Double]) -> Double) -> [Double] {
    let h = centralDifferenceStep
    var point = x
    var gradient = [Double](repeating: 0, count: x.count)
    for i in x.indices {
        point[i] = x[i] + h
        let plus = loss(point)
        point[i] = x[i] - h
        let minus = loss(point)
        point[i] = x[i]
        gradient[i] = (plus - minus) / (2 * h)
    }
    return gradient
}

/// sum_i a[i] * b[i], the scalar loss whose gradient with respect to `a` is `b`.
func weightedSum(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
}

/// The awkward sizes every row kernel is tested at (ggml's tail sizes).
let tailSizes = [1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129]
