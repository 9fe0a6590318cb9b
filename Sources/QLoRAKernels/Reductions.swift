// Reductions in double precision: the sum of squares behind gradient clipping, and the absolute
// error between two buffers that the converter reports per projection.
import CQLoRAKernels

/// `sum x[i]^2` over `count` floats, accumulated in double (exact products; eight partial sums).
public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    precondition(count >= 0)
    return qlora_sum_squares(x, count)
}

/// ACCUMULATES `sum |a[i] - b[i]|` into `sum` and raises `maximum` to `max |a[i] - b[i]|`.
public func accumulateAbsoluteError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int,
                                    sum: inout Double, maximum: inout Float) {
    precondition(count >= 0)
    qlora_abs_error(a, b, count, &sum, &maximum)
}

extension Reference {
    /// Scalar twin of `sumOfSquares` (one double accumulator: it may differ in the last bits).
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        (0..<count).reduce(0.0) { $0 + Double(x[$1]) * Double(x[$1]) }
    }

    /// Scalar twin of `accumulateAbsoluteError`.
    public static func accumulateAbsoluteError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int,
                                               sum: inout Double, maximum: inout Float) {
        for i in 0..<count {
            let error = abs(a[i] - b[i])
            sum += Double(error)
            maximum = max(maximum, error)
        }
    }
}
