// The page table of the paged optimizer: at most `residentLimit` pages of optimizer state in RAM,
// each in a frame of a pool that is reused from page to page (no page faults in steady paging);
// the others in the spill file. The updating thread evicts (encodes) its victims itself while a
// worker thread loads the pages it asked for ahead, so the two cores share the paging work. The
// updating thread only ever touches pages that are ready; the worker only pages it was given.
import QLoRAKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Counters of the spill traffic since the store was created (or `resetStatistics`). Byte counts
/// are of optimizer state (the empty tail of the last page is not counted).
public struct PagingStatistics: Sendable, Equatable {
    public var pagesSpilled = 0
    public var pagesRestored = 0
    public var zeroPages = 0
    public var rawPages = 0
    public var compressedPages = 0
    /// State bytes spilled and the bytes their encodings took.
    public var bytesSpilled = 0
    public var bytesStored = 0
    /// State bytes brought back; time spent encoding pages out (updating thread) and bringing them back (worker).
    public var bytesRestored = 0
    public var spillSeconds = 0.0
    public var restoreSeconds = 0.0
    /// Time the updating thread waited for a page.
    public var stallSeconds = 0.0
    public init() {}
}

final class PageStore: @unchecked Sendable {
    struct Entry {
        /// Where the page will be once its pending load has run.
        var residentTarget = false
        /// A load queued or running, or an eviction running.
        var busy = false
        /// Index of its frame in the pool while resident; -1 when spilled.
        var frame = -1
        /// Valid while the page is spilled.
        var encoding = PageEncoding.zero
        var storedBytes = 0
        var checksum: UInt64 = 0
        var lastUse: UInt64 = 0
    }

    let pageBytes: Int
    let pageCount: Int
    /// Bytes of optimizer state in each page (the last page may be partly empty).
    let stateBytes: [Int]
    let spillDirectory: String
    /// Pool of `pageCount` frames of `pageBytes`, anonymous and MAP_NORESERVE: at most
    /// `residentLimit` are in use, and a frame costs RAM only once touched.
    let frames: UnsafeMutableRawPointer
    private(set) var residentLimit: Int

    private let condition = NSCondition()
    private var entries: [Entry]
    private var freeFrames: [Int]
    /// Free frames that were used since their RAM was last given back.
    private var touchedFreeFrames: [Int] = []
    private var residentCount = 0
    private var loads: [Int] = []
    private var loadHead = 0
    private var tick: UInt64 = 0
    private var failure: OptimizerError?
    private var stopping = false
    private var spill: SpillFile?
    private var statistics = PagingStatistics()
    private let workerCodec: PageCodec
    private let evictionCodec: PageCodec
    private let stopped = DispatchSemaphore(value: 0)

    init(pageBytes: Int, stateBytes: [Int], residentLimit: Int, spillDirectory: String) throws(OptimizerError) {
        precondition(pageBytes > 0 && pageBytes % 4096 == 0 && !stateBytes.isEmpty && residentLimit >= 1)
        self.pageBytes = pageBytes
        self.stateBytes = stateBytes
        pageCount = stateBytes.count
        self.residentLimit = residentLimit
        self.spillDirectory = spillDirectory
        let mapped = mmap(nil, pageBytes * pageCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { preconditionFailure("cannot reserve \(pageBytes * pageCount) bytes of address space for optimizer pages") }
        frames = mapped
        // A transparent huge page would keep 2 MiB resident for a 4 KiB touch and would not give back a page's RAM.
        madvise(frames, pageBytes * pageCount, MADV_NOHUGEPAGE)
        // Every page starts as a zero page: spilled, with no bytes.
        entries = Array(repeating: Entry(), count: pageCount)
        freeFrames = Array((0..<pageCount).reversed())
        workerCodec = PageCodec(pageBytes: pageBytes)
        evictionCodec = PageCodec(pageBytes: pageBytes)
        if residentLimit < pageCount { try openSpill() }
        let thread = Thread { [self] in loadLoop() }
        thread.name = "qlora-optimizer-pages"
        thread.start()
    }

    /// Stops the worker; the store is freed when the worker lets go of it.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        stopped.wait()
    }

    deinit {
        munmap(frames, pageBytes * pageCount)
        workerCodec.deallocate()
        evictionCodec.deallocate()
    }

    /// The frame of a resident page (valid until the page is evicted).
    func frame(_ page: Int) -> UnsafeMutableRawPointer {
        condition.lock()
        defer { condition.unlock() }
        precondition(entries[page].frame >= 0, "page \(page) is not resident")
        return frames + entries[page].frame * pageBytes
    }

    var spillFile: SpillFile? {
        condition.lock()
        defer { condition.unlock() }
        return spill
    }

    private func openSpill() throws(OptimizerError) {
        if spill == nil { spill = try SpillFile(directory: spillDirectory, slotBytes: pageBytes, slots: pageCount) }
    }

    // MARK: - Requests from the updating thread

    /// Makes sure `page` is resident or on its way, first evicting the least recently used page
    /// that `pinned` does not protect when the limit is reached. Returns false when no page could
    /// make room (everything resident is pinned or busy).
    func request(_ page: Int, pinned: (Int) -> Bool) throws(OptimizerError) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        if entries[page].residentTarget { return true }
        if residentCount >= residentLimit {
            guard let victim = leastRecentlyUsed(excluding: pinned) else { return false }
            try evictLocked(victim)
        }
        entries[page].residentTarget = true
        entries[page].busy = true
        entries[page].frame = freeFrames.removeLast()
        residentCount += 1
        entries[page].lastUse = nextTick()
        loads.append(page)
        condition.broadcast()
        return true
    }

    /// Waits until `page` is resident and its load done; returns the seconds waited.
    func waitUntilReady(_ page: Int) throws(OptimizerError) -> Double {
        condition.lock()
        defer { condition.unlock() }
        precondition(entries[page].residentTarget, "page \(page) waited for without a request")
        if !entries[page].busy, failure == nil { return 0 }
        let start = DispatchTime.now().uptimeNanoseconds
        while entries[page].busy && failure == nil { condition.wait() }
        if let failure { throw failure }
        let waited = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        statistics.stallSeconds += waited
        return waited
    }

    func markUsed(_ page: Int) {
        condition.lock()
        entries[page].lastUse = nextTick()
        condition.unlock()
    }

    /// Evicts least recently used pages until at most `pages` are resident, then gives the RAM of
    /// every free frame back to the system.
    func trim(toResident pages: Int) throws(OptimizerError) {
        condition.lock()
        defer { condition.unlock() }
        try trimLocked(toResident: pages)
    }

    private func trimLocked(toResident pages: Int) throws(OptimizerError) {
        try waitIdleLocked()
        while residentCount > pages, let victim = leastRecentlyUsed(excluding: { _ in false }) {
            try evictLocked(victim)
        }
        releaseFreeFramesLocked()
    }

    /// Gives back the RAM of frames that were freed and not reused (after a step, so that RSS
    /// holds only the resident pages).
    func releaseFreeFrames() {
        condition.lock()
        releaseFreeFramesLocked()
        condition.unlock()
    }

    /// Changes the resident limit; pages beyond a lower limit are evicted now.
    func setResidentLimit(_ limit: Int) throws(OptimizerError) {
        precondition(limit >= 1)
        condition.lock()
        defer { condition.unlock() }
        residentLimit = limit
        if limit < pageCount { try openSpill() }
        try trimLocked(toResident: limit)
    }

    func waitIdle() throws(OptimizerError) {
        condition.lock()
        defer { condition.unlock() }
        try waitIdleLocked()
    }

    var statisticsSnapshot: PagingStatistics {
        condition.lock()
        defer { condition.unlock() }
        return statistics
    }

    func resetStatistics() {
        condition.lock()
        statistics = PagingStatistics()
        condition.unlock()
    }

    var residentPages: Int {
        condition.lock()
        defer { condition.unlock() }
        return residentCount
    }

    /// The stored form of a spilled page, or nil when it is resident. Call when idle.
    func spilledForm(_ page: Int) -> (encoding: PageEncoding, storedBytes: Int, checksum: UInt64)? {
        condition.lock()
        defer { condition.unlock() }
        precondition(loadHead == loads.count)
        let entry = entries[page]
        if entry.residentTarget { return nil }
        return (entry.encoding, entry.storedBytes, entry.checksum)
    }

    /// Makes `page` resident without reading what it held (checkpoint restore overwrites it),
    /// evicting to stay within the limit. The caller then fills `frame(page)`.
    func residentForOverwrite(_ page: Int) throws(OptimizerError) {
        condition.lock()
        if !entries[page].residentTarget {
            entries[page].encoding = .zero
            entries[page].storedBytes = 0
        }
        condition.unlock()
        let requested = try request(page, pinned: { $0 == page })
        precondition(requested, "no page could be evicted")
        _ = try waitUntilReady(page)
    }

    /// Reads a spilled page's bytes back through the checksum and decoder into `destination`.
    func readSpilled(_ page: Int, into destination: UnsafeMutableRawPointer, codec: PageCodec) throws(OptimizerError) {
        guard let form = spilledForm(page) else { preconditionFailure("page \(page) is resident") }
        try verifyAndDecode(page, form.encoding, storedBytes: form.storedBytes, checksum: form.checksum, spill: spillFile,
                            into: destination, codec: codec)
    }

    // MARK: - Internals (condition locked)

    private func nextTick() -> UInt64 {
        tick += 1
        return tick
    }

    private func waitIdleLocked() throws(OptimizerError) {
        while loadHead < loads.count && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    private func leastRecentlyUsed(excluding pinned: (Int) -> Bool) -> Int? {
        var best: Int?
        for page in 0..<pageCount where entries[page].residentTarget && !entries[page].busy && !pinned(page) {
            if best == nil || entries[page].lastUse < entries[best!].lastUse { best = page }
        }
        return best
    }

    /// Encodes `victim` into its slot and frees its frame. The lock is released while encoding;
    /// the victim is ready (not busy), so only this thread touches its frame meanwhile.
    private func evictLocked(_ victim: Int) throws(OptimizerError) {
        try openSpill()
        let spill = spill!
        let frameIndex = entries[victim].frame
        entries[victim].busy = true
        condition.unlock()
        let start = DispatchTime.now().uptimeNanoseconds
        let slot = spill.slot(victim)
        let (encoding, stored) = evictionCodec.encode(frames + frameIndex * pageBytes, into: slot)
        let checksum = stored > 0 ? XXH64.hash(slot, count: stored, seed: UInt64(victim)) : 0
        spill.release(victim)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        condition.lock()
        entries[victim].encoding = encoding
        entries[victim].storedBytes = stored
        entries[victim].checksum = checksum
        entries[victim].residentTarget = false
        entries[victim].busy = false
        entries[victim].frame = -1
        freeFrames.append(frameIndex)
        touchedFreeFrames.append(frameIndex)
        residentCount -= 1
        statistics.pagesSpilled += 1
        statistics.bytesSpilled += stateBytes[victim]
        statistics.bytesStored += stored
        statistics.spillSeconds += seconds
        switch encoding {
        case .zero: statistics.zeroPages += 1
        case .raw: statistics.rawPages += 1
        case .shuffledLZ4: statistics.compressedPages += 1
        }
    }

    private func releaseFreeFramesLocked() {
        // A frame that was freed and then taken again is in use: leave it.
        let inUse = Set(entries.lazy.filter { $0.frame >= 0 }.map(\.frame))
        for frame in touchedFreeFrames where !inUse.contains(frame) {
            madvise(frames + frame * pageBytes, pageBytes, MADV_DONTNEED)
        }
        touchedFreeFrames.removeAll(keepingCapacity: true)
    }

    // MARK: - Worker

    private func loadLoop() {
        condition.lock()
        while true {
            while loadHead == loads.count && !stopping { condition.wait() }
            if loadHead == loads.count { break }
            let page = loads[loadHead]
            let entry = entries[page]
            let spill = self.spill
            condition.unlock()
            let start = DispatchTime.now().uptimeNanoseconds
            var error: OptimizerError?
            do throws(OptimizerError) {
                try verifyAndDecode(page, entry.encoding, storedBytes: entry.storedBytes, checksum: entry.checksum, spill: spill,
                                    into: frames + entry.frame * pageBytes, codec: workerCodec)
            } catch let caught {
                error = caught
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            condition.lock()
            if let error, failure == nil { failure = error }
            if entry.encoding != .zero {
                statistics.pagesRestored += 1
                statistics.bytesRestored += stateBytes[page]
                statistics.restoreSeconds += seconds
            }
            entries[page].busy = false
            loadHead += 1
            if loadHead == loads.count {
                loads.removeAll(keepingCapacity: true)
                loadHead = 0
            }
            condition.broadcast()
        }
        condition.unlock()
        stopped.signal()
    }

    /// Writes the page's contents into `destination`: zeros for a zero page, else its spilled
    /// bytes after checking the file's size and the checksum.
    private func verifyAndDecode(_ page: Int, _ encoding: PageEncoding, storedBytes: Int, checksum: UInt64, spill: SpillFile?,
                                 into destination: UnsafeMutableRawPointer, codec: PageCodec) throws(OptimizerError) {
        if encoding == .zero {
            _ = codec.decode(.zero, destination, storedBytes: 0, into: destination)
            return
        }
        let spill = spill!
        try spill.checkCovers(page)
        let slot = spill.slot(page)
        defer { spill.release(page) }
        let found = XXH64.hash(slot, count: storedBytes, seed: UInt64(page))
        guard found == checksum else {
            throw .spillCorrupt(directory: spill.directory, page: page, detail: "checksum \(String(found, radix: 16)), expected \(String(checksum, radix: 16))")
        }
        guard codec.decode(encoding, slot, storedBytes: storedBytes, into: destination) else {
            throw .spillCorrupt(directory: spill.directory, page: page, detail: "the stored bytes do not decode to a page")
        }
    }
}
