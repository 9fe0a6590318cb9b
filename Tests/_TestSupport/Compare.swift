// Tensor comparators for tests: report max-abs, max-rel, the worst index and the first mismatches
// (llm.c check_tensor), so a failure says where and by how much.
@_exported import struct QLoRAKernels.SplitMix64

/// The result of comparing two float arrays elementwise.
public struct Comparison: CustomStringConvertible {
    public var count = 0
    public var maxAbs: Double = 0
    public var maxRel: Double = 0
    public var worstIndex = -1
    public var failures = 0
    public var firstFailures: [(index: Int, actual: Double, expected: Double)] = []

    public var passed: Bool { failures == 0 }

    public var description: String {
        var text = "\(failures)/\(count) outside tolerance; max|diff| \(maxAbs), max rel \(maxRel) at index \(worstIndex)"
        for failure in firstFailures { text += "\n  [\(failure.index)] actual \(failure.actual) expected \(failure.expected)" }
        return text
    }
}

/// Compares `actual` to `expected` with |a - e| <= atol + rtol * |e| per element; NaN never passes.
public func compare(_ actual: [Float], _ expected: [Float], rtol: Double, atol: Double) -> Comparison {
    precondition(actual.count == expected.count, "length \(actual.count) vs \(expected.count)")
    var result = Comparison()
    result.count = actual.count
    for i in 0..<actual.count {
        let a = Double(actual[i]), e = Double(expected[i])
        let diff = abs(a - e)
        let rel = diff / max(abs(e), 1e-30)
        if diff > result.maxAbs || diff.isNaN {
            result.maxAbs = diff.isNaN ? .nan : diff
            result.worstIndex = i
        }
        result.maxRel = max(result.maxRel, rel)
        if !(diff <= atol + rtol * abs(e)) {
            result.failures += 1
            if result.firstFailures.count < 5 { result.firstFailures.append((i, a, e)) }
        }
    }
    return result
}

/// Compares two byte arrays exactly; reports the count of differing bytes and the first five.
public func compareBytes(_ actual: [UInt8], _ expected: [UInt8]) -> Comparison {
    var result = Comparison()
    result.count = max(actual.count, expected.count)
    if actual.count != expected.count {
        result.failures = result.count
        result.firstFailures.append((-1, Double(actual.count), Double(expected.count)))
        return result
    }
    for i in 0..<actual.count where actual[i] != expected[i] {
        result.failures += 1
        if result.worstIndex < 0 { result.worstIndex = i }
        if result.firstFailures.count < 5 { result.firstFailures.append((i, Double(actual[i]), Double(expected[i]))) }
    }
    return result
}
