// Holds out a seeded fraction of the training examples for evaluation when no validation file
// is given. The split is taken before packing, so no example is in both parts.

/// Training and validation examples, each in file order.
public struct DataSplit: Sendable {
    public var train: [TrainingExample]
    public var valid: [TrainingExample]

    /// Held out by default: 5% of the examples.
    public static let defaultValidFraction = 0.05

    /// Moves `validCount(examples:fraction:)` examples, chosen by a permutation seeded with `seed`,
    /// into `valid`.
    /// - Precondition: `0 <= validFraction < 1`.
    public init(_ examples: [TrainingExample], validFraction: Double, seed: UInt64) {
        let held = Self.validCount(examples: examples.count, fraction: validFraction)
        var isValid = [Bool](repeating: false, count: examples.count)
        for index in seededPermutation(count: examples.count, seed: seed, stream: .validationSplit).prefix(held) {
            isValid[index] = true
        }
        train = examples.indices.filter { !isValid[$0] }.map { examples[$0] }
        valid = examples.indices.filter { isValid[$0] }.map { examples[$0] }
    }

    /// How many of `examples` are held out: round(examples × fraction), at least 1 and at most
    /// examples − 1 when there are 2 or more; none with fraction 0 or fewer than 2 examples.
    /// - Precondition: `0 <= fraction < 1`.
    public static func validCount(examples: Int, fraction: Double) -> Int {
        precondition(fraction >= 0 && fraction < 1, "validFraction must be in [0, 1)")
        guard fraction > 0, examples >= 2 else { return 0 }
        return min(examples - 1, max(1, Int((Double(examples) * fraction).rounded())))
    }
}
