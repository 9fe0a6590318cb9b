// The BPE model of Hugging Face tokenizers (tokenizers/src/models/bpe/model.rs `merge_word`,
// word.rs `merge_all`), integer ids throughout. Leaves out dropout, continuing_subword_prefix and
// end_of_word_suffix (refused at load) and training.
import QLoRAIO

/// Byte-pair encoding of one pre-tokenized word.
struct BPEModel: Sendable {
    /// Token (UTF-8 bytes, exactly as in the file) -> id.
    let vocab: [[UInt8]: Int32]
    /// `left << 32 | right` -> `rank << 32 | merged`: rank = index in `model.merges` (a repeated
    /// pair keeps its last rank, as tokenizers' HashMap collect does).
    let merges: [UInt64: UInt64]
    /// Ids of the single-scalar tokens, the starting symbols of `merge_word`.
    let scalarIds: [UInt32: Int32]
    /// `<0xNN>` ids for byte fallback, -1 where absent; empty without byte fallback.
    let byteIds: [Int32]
    let unkId: Int32?
    let fuseUnk: Bool
    let ignoreMerges: Bool

    /// Appends the ids of `word` (the model's input: UTF-8, already in the byte alphabet for
    /// byte-level models) to `out`.
    ///
    /// Each scalar starts as its own token; a scalar outside the vocabulary becomes its UTF-8
    /// bytes' `<0xNN>` tokens (byte fallback, when all exist), else the unknown token (runs fused
    /// when `fuseUnk`), else is dropped, as tokenizers does. Then pairs merge lowest rank first,
    /// leftmost first among equal ranks, with tokenizers' heap and its stale-entry rule.
    func tokenize(_ word: [UInt8], into out: inout [Int32]) {
        if word.isEmpty { return }
        if ignoreMerges, let id = vocab[word] {
            out.append(id)
            return
        }
        // Symbols: token id, previous/next index (-1: none), byte length (0: merged away).
        var ids: [Int32] = []
        var lengths: [Int] = []
        ids.reserveCapacity(word.count)
        lengths.reserveCapacity(word.count)
        var pendingUnk: (id: Int32, length: Int)?
        var i = 0
        while i < word.count {
            let (scalar, length) = Self.decodeScalar(word, at: i)
            defer { i += length }
            if let id = scalarIds[scalar] {
                if let unk = pendingUnk {
                    ids.append(unk.id); lengths.append(unk.length)
                    pendingUnk = nil
                }
                ids.append(id); lengths.append(length)
                continue
            }
            if !byteIds.isEmpty {
                var all = true
                for b in i..<(i + length) where byteIds[Int(word[b])] < 0 { all = false }
                if all {
                    // tokenizers pushes the byte tokens without flushing a pending unknown first.
                    for b in i..<(i + length) { ids.append(byteIds[Int(word[b])]); lengths.append(1) }
                    continue
                }
            }
            guard let unkId else { continue }
            if let unk = pendingUnk {
                if fuseUnk {
                    pendingUnk = (unk.id, unk.length + length)
                } else {
                    ids.append(unk.id); lengths.append(unk.length)
                    pendingUnk = (unkId, length)
                }
            } else {
                pendingUnk = (unkId, length)
            }
        }
        if let unk = pendingUnk { ids.append(unk.id); lengths.append(unk.length) }
        mergeAll(&ids, &lengths)
        for (k, id) in ids.enumerated() where lengths[k] != 0 { out.append(id) }
    }

    /// word.rs `merge_all` without dropout: a min-heap on (rank, position); an entry whose pair
    /// no longer merges into the same id is skipped.
    private func mergeAll(_ ids: inout [Int32], _ lengths: inout [Int]) {
        let n = ids.count
        guard n > 1 else { return }
        var prev = [Int](unsafeUninitializedCapacity: n) { b, c in for k in 0..<n { b[k] = k - 1 }; c = n }
        var next = [Int](unsafeUninitializedCapacity: n) { b, c in for k in 0..<n { b[k] = k + 1 < n ? k + 1 : -1 }; c = n }
        var heap = MergeHeap()
        for k in 0..<(n - 1) {
            if let m = merges[Self.pair(ids[k], ids[k + 1])] { heap.push(rank: m >> 32, position: k, newId: Int32(truncatingIfNeeded: m)) }
        }
        while let top = heap.pop() {
            let pos = top.position
            if lengths[pos] == 0 { continue }
            let right = next[pos]
            if right < 0 { continue }
            guard let m = merges[Self.pair(ids[pos], ids[right])], Int32(truncatingIfNeeded: m) == top.newId else { continue }
            ids[pos] = top.newId
            lengths[pos] += lengths[right]
            lengths[right] = 0
            let after = next[right]
            next[pos] = after
            if after >= 0 { prev[after] = pos }
            let before = prev[pos]
            if before >= 0, let m = merges[Self.pair(ids[before], ids[pos])] {
                heap.push(rank: m >> 32, position: before, newId: Int32(truncatingIfNeeded: m))
            }
            if after >= 0, let m = merges[Self.pair(ids[pos], ids[after])] {
                heap.push(rank: m >> 32, position: pos, newId: Int32(truncatingIfNeeded: m))
            }
        }
    }

    @inline(__always)
    static func pair(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// The scalar starting at `i` of valid UTF-8 and its byte length.
    @inline(__always)
    static func decodeScalar(_ bytes: [UInt8], at i: Int) -> (UInt32, Int) {
        let b0 = UInt32(bytes[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F), 3) }
        return ((b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F), 4)
    }
}

/// A binary min-heap of pending merges ordered by (rank, position), as tokenizers' `Merge` Ord.
private struct MergeHeap {
    private var keys: [UInt64] = []   // rank << 32 | position
    private var newIds: [Int32] = []

    mutating func push(rank: UInt64, position: Int, newId: Int32) {
        keys.append(rank << 32 | UInt64(position))
        newIds.append(newId)
        var child = keys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if keys[parent] <= keys[child] { break }
            keys.swapAt(parent, child)
            newIds.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> (position: Int, newId: Int32)? {
        guard let first = keys.first else { return nil }
        let result = (Int(first & 0xFFFF_FFFF), newIds[0])
        let last = keys.count - 1
        keys.swapAt(0, last)
        newIds.swapAt(0, last)
        keys.removeLast()
        newIds.removeLast()
        var parent = 0
        let n = keys.count
        while true {
            let left = 2 * parent + 1
            if left >= n { break }
            let right = left + 1
            let child = right < n && keys[right] < keys[left] ? right : left
            if keys[parent] <= keys[child] { break }
            keys.swapAt(parent, child)
            newIds.swapAt(parent, child)
            parent = child
        }
        return result
    }
}
