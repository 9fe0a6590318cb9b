// The deterministic, endless sequence of packed rows a run trains on: examples shuffled once and
// packed once, then every epoch visits the rows in its own seeded order.
import QLoRAModel

/// Packed training rows addressed by a global position: position p is row `order(epoch: p / count)
/// [p % count]`, so a run resumed at a saved position sees exactly the rows it would have seen.
public struct DataStream: Sendable {
    /// The packed rows, in packing order.
    public let sequences: [PackedSequence]
    public let seqLen: Int
    public let seed: UInt64
    public let shuffle: Bool
    /// Examples packed into `sequences`.
    public let exampleCount: Int
    /// Positions with a loss in each of `sequences`.
    private let targetCounts: [Int]

    /// Shuffles `examples` with `seed` (unless `shuffle` is off), then packs them with `packer`.
    /// - Precondition: `examples` is not empty and fits the packer (see `SequencePacker.pack`).
    public init(examples: [TrainingExample], packer: SequencePacker, shuffle: Bool = true, seed: UInt64) {
        precondition(!examples.isEmpty, "a data stream needs at least one example")
        let ordered = shuffle ? seededPermutation(count: examples.count, seed: seed, stream: .exampleOrder).map { examples[$0] } : examples
        sequences = packer.pack(ordered)
        seqLen = packer.seqLen
        self.seed = seed
        self.shuffle = shuffle
        exampleCount = examples.count
        targetCounts = sequences.map { sequence in sequence.targets.reduce(0) { $0 + ($1 == TokenBatch.ignore ? 0 : 1) } }
    }

    /// Rows per epoch.
    public var count: Int { sequences.count }

    /// The order in which `epoch` (0-based) visits `sequences`: a permutation seeded by (seed,
    /// epoch), the identity when `shuffle` is off.
    public func order(epoch: Int) -> [Int] {
        shuffle ? seededPermutation(count: count, seed: seed, stream: .epoch(epoch)) : Array(0..<count)
    }

    /// Target tokens of the `rows` rows from global `position` on, without building them (a step
    /// may hold far more rows than one micro-batch).
    public func targetCount(from position: Int, count rows: Int) -> Int {
        precondition(position >= 0 && rows >= 0)
        var total = 0, epoch = -1, order: [Int] = []
        for p in position..<position + rows {
            if p / count != epoch {
                epoch = p / count
                order = self.order(epoch: epoch)
            }
            total += targetCounts[order[p % count]]
        }
        return total
    }

    /// The `count` rows from global `position` on, running into the next epochs as needed.
    /// - Precondition: `position >= 0`, `count >= 0`.
    public func sequences(from position: Int, count rows: Int) -> [PackedSequence] {
        precondition(position >= 0 && rows >= 0)
        var out: [PackedSequence] = []
        out.reserveCapacity(rows)
        var epoch = -1, order: [Int] = []
        for p in position..<position + rows {
            if p / count != epoch {
                epoch = p / count
                order = self.order(epoch: epoch)
            }
            out.append(sequences[order[p % count]])
        }
        return out
    }

    /// `rows` rows from `position` on as a (rows, seqLen) batch, positions and attention
    /// restarting at each packed example.
    public func batch(from position: Int, rows: Int) -> TokenBatch {
        precondition(rows > 0)
        let picked = sequences(from: position, count: rows)
        return TokenBatch(batch: rows, seqLen: seqLen, tokens: picked.flatMap(\.tokens), targets: picked.flatMap(\.targets),
                          sequenceIds: picked.flatMap(\.sequenceIds))
    }
}
