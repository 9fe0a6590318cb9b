// The seeded shuffles of the data pipeline (example order, validation split, epoch order), each
// from its own SplitMix64 stream so that none shifts when another changes.
import QLoRAKernels

/// Which shuffle a permutation is for; each draws from its own stream of the run's seed.
enum ShuffleStream: Sendable {
    case exampleOrder
    case validationSplit
    case epoch(Int)

    var id: UInt64 {
        switch self {
        case .exampleOrder: 0
        case .validationSplit: 1
        case .epoch(let epoch): 2 + UInt64(epoch)
        }
    }
}

/// A permutation of 0..<count: Fisher–Yates from the last index down, j = the high 64 bits of
/// `next() * (i + 1)` (Lemire's multiply, no modulo), on SplitMix64 seeded with
/// `seed ^ SplitMix64(seed: stream.id).next()`. Fixed here, so a resumed run sees the same order.
func seededPermutation(count: Int, seed: UInt64, stream: ShuffleStream) -> [Int] {
    var streamKey = SplitMix64(seed: stream.id)
    var random = SplitMix64(seed: seed ^ streamKey.next())
    var order = Array(0..<count)
    var i = count - 1
    while i > 0 {
        let j = Int(random.next().multipliedFullWidth(by: UInt64(i + 1)).high)
        order.swapAt(i, j)
        i -= 1
    }
    return order
}
