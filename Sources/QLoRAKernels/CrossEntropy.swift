// Cross entropy over rows of logits with ignore_index -100 (torch.nn.functional.cross_entropy,
// reduction "none"), fused with its backward so a logits chunk becomes its gradient in place.
// The mean over tokens is the caller's `dLogitScale` (e.g. 1 / number of counted targets).
import CQLoRAKernels

/// The target of rows that do not count (PyTorch's default `ignore_index`).
public let crossEntropyIgnoreIndex: Int32 = -100

/// Cross entropy forward and backward in one pass per row:
/// `losses[r] = logsumexp(logits[r,:]) - logits[r, targets[r]]`, then
/// `logits[r,:] = dLogitScale * (softmax(logits[r,:]) - onehot(targets[r]))`, the gradient of
/// `dLogitScale * losses[r]`. Rows whose target is -100 get loss 0 and an all-zero gradient.
/// Sums are accumulated in double.
/// - Parameters:
///   - logits: `(rows, vocab)`, overwritten in place with the gradient.
///   - losses: `(rows)`, overwritten.
///   - targets: `(rows)`.
/// - Precondition: `vocab > 0`; every target is in `0..<vocab` or is -100.
public func crossEntropyForwardBackward(
    _ logits: UnsafeMutablePointer<Float>, _ losses: UnsafeMutablePointer<Float>, _ targets: UnsafePointer<Int32>,
    rows: Int, vocab: Int, dLogitScale: Float
) {
    checkTargets(targets, rows: rows, vocab: vocab)
    let logits = UnsafeSendable(logits), losses = UnsafeSendable(losses), targets = UnsafeSendable(targets)
    parallelChunks(count: rows, minimumChunk: rowsPerChunk(vocab)) { range in
        let first = range.lowerBound
        qlora_cross_entropy_forward_backward(logits.raw + first * vocab, losses.raw + first, targets.raw + first,
                                             range.count, vocab, dLogitScale)
    }
}

/// Cross entropy forward only (evaluation): `losses[r] = logsumexp(logits[r,:]) - logits[r, targets[r]]`,
/// 0 where the target is -100. `logits` `(rows, vocab)` is unchanged; `losses` `(rows)` is overwritten.
/// - Precondition: `vocab > 0`; every target is in `0..<vocab` or is -100.
public func crossEntropyForward(
    _ losses: UnsafeMutablePointer<Float>, _ logits: UnsafePointer<Float>, _ targets: UnsafePointer<Int32>,
    rows: Int, vocab: Int
) {
    checkTargets(targets, rows: rows, vocab: vocab)
    let logits = UnsafeSendable(logits), losses = UnsafeSendable(losses), targets = UnsafeSendable(targets)
    parallelChunks(count: rows, minimumChunk: rowsPerChunk(vocab)) { range in
        let first = range.lowerBound
        qlora_cross_entropy_forward(losses.raw + first, logits.raw + first * vocab, targets.raw + first, range.count,
                                    vocab)
    }
}

private func checkTargets(_ targets: UnsafePointer<Int32>, rows: Int, vocab: Int) {
    precondition(rows >= 0 && vocab > 0 && vocab <= Int(Int32.max))
    for r in 0..<rows {
        precondition(targets[r] == crossEntropyIgnoreIndex || (targets[r] >= 0 && Int(targets[r]) < vocab),
                     "target \(targets[r]) of row \(r) is neither in 0..<\(vocab) nor \(crossEntropyIgnoreIndex)")
    }
}

extension Reference {
    /// Double twin of `crossEntropyForwardBackward`.
    public static func crossEntropyForwardBackward(
        _ logits: UnsafeMutablePointer<Double>, _ losses: UnsafeMutablePointer<Double>, _ targets: UnsafePointer<Int32>,
        rows: Int, vocab: Int, dLogitScale: Double
    ) {
        for r in 0..<rows {
            let x = logits + r * vocab
            guard targets[r] != crossEntropyIgnoreIndex else {
                losses[r] = 0
                for i in 0..<vocab { x[i] = 0 }
                continue
            }
            let target = Int(targets[r])
            let lse = logSumExp(x, count: vocab)
            losses[r] = lse - x[target]
            // d losses[r] / d x[i] = e^(x[i] - lse) - onehot(target)[i]
            for i in 0..<vocab { x[i] = dLogitScale * exp(x[i] - lse) }
            x[target] -= dLogitScale
        }
    }

    /// Double twin of `crossEntropyForward`.
    public static func crossEntropyForward(
        _ losses: UnsafeMutablePointer<Double>, _ logits: UnsafePointer<Double>, _ targets: UnsafePointer<Int32>,
        rows: Int, vocab: Int
    ) {
        for r in 0..<rows {
            let x = logits + r * vocab
            losses[r] = targets[r] == crossEntropyIgnoreIndex ? 0 : logSumExp(x, count: vocab) - x[Int(targets[r])]
        }
    }

    /// log(sum_i e^x[i]), shifted by the maximum so no term overflows.
    static func logSumExp(_ x: UnsafePointer<Double>, count: Int) -> Double {
        var m = -Double.infinity
        for i in 0..<count { m = max(m, x[i]) }
        var sum = 0.0
        for i in 0..<count { sum += exp(x[i] - m) }
        return m + log(sum)
    }
}

#if canImport(Glibc)
import Glibc
#endif
