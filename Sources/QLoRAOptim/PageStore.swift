// The page table of the paged optimizer: pages of optimizer state in one anonymous mapping,
// at most `residentLimit` of them in RAM, the others in the spill file. A worker thread runs
// evictions and loads in FIFO order, so an eviction queued before a load has freed its frame
// before the load fills another; the updating thread only ever touches pages that are ready.
import CQLoRAKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Counters of the spill traffic since the store was created (or `resetStatistics`).
public struct PagingStatistics: Sendable, Equatable {
    public var pagesSpilled = 0
    public var pagesRestored = 0
    public var zeroPages = 0
    public var rawPages = 0
    public var compressedPages = 0
    /// Page bytes spilled (before encoding) and the bytes the encodings took.
    public var bytesSpilled = 0
    public var bytesStored = 0
    /// Page bytes brought back, and the worker's time spent spilling and restoring.
    public var bytesRestored = 0
    public var spillSeconds = 0.0
    public var restoreSeconds = 0.0
    /// Time the updating thread waited for a page.
    public var stallSeconds = 0.0
    public init() {}
}

final class PageStore: @unchecked Sendable {
    struct Entry {
        /// Where the page will be once its queued jobs have run.
        var residentTarget = false
        var pendingJobs = 0
        /// Valid while the page is spilled.
        var encoding = PageEncoding.zero
        var storedBytes = 0
        var checksum: UInt64 = 0
        var lastUse: UInt64 = 0
    }

    enum Job {
        case evict(Int)
        case load(Int)
    }

    let pageBytes: Int
    let pageCount: Int
    let spillDirectory: String
    /// (pageCount * pageBytes) anonymous, MAP_NORESERVE: a page's frame uses RAM only while resident.
    let frames: UnsafeMutableRawPointer
    private(set) var residentLimit: Int

    private let condition = NSCondition()
    private var entries: [Entry]
    private var residentCount = 0
    private var jobs: [Job] = []
    private var jobHead = 0
    private var busy = 0  // jobs queued or running
    private var tick: UInt64 = 0
    private var failure: OptimizerError?
    private var stopping = false
    private var spill: SpillFile?
    private var statistics = PagingStatistics()
    private let codec: PageCodec  // the worker's
    private let stopped = DispatchSemaphore(value: 0)

    init(pageBytes: Int, pageCount: Int, residentLimit: Int, spillDirectory: String) throws(OptimizerError) {
        precondition(pageBytes > 0 && pageBytes % 4096 == 0 && pageCount > 0 && residentLimit >= 1)
        self.pageBytes = pageBytes
        self.pageCount = pageCount
        self.residentLimit = residentLimit
        self.spillDirectory = spillDirectory
        let mapped = mmap(nil, pageBytes * pageCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { preconditionFailure("cannot reserve \(pageBytes * pageCount) bytes of address space for optimizer pages") }
        frames = mapped
        // A transparent huge page would keep 2 MiB resident for a 4 KiB touch and would not give back a page's RAM.
        madvise(frames, pageBytes * pageCount, MADV_NOHUGEPAGE)
        // Every page starts as a zero page: spilled, with no bytes, and its frame untouched.
        entries = Array(repeating: Entry(), count: pageCount)
        codec = PageCodec(pageBytes: pageBytes)
        if residentLimit < pageCount { try openSpill() }
        let thread = Thread { [self] in workerLoop() }
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
        codec.deallocate()
    }

    func frame(_ page: Int) -> UnsafeMutableRawPointer { frames + page * pageBytes }

    var spillFile: SpillFile? {
        condition.lock()
        defer { condition.unlock() }
        return spill
    }

    private func openSpill() throws(OptimizerError) {
        if spill == nil { spill = try SpillFile(directory: spillDirectory, slotBytes: pageBytes, slots: pageCount) }
    }

    // MARK: - Requests from the updating thread

    /// Makes sure `page` is resident or on its way, evicting the least recently used page that
    /// `pinned` does not protect when the limit is reached. Returns false when no page could make
    /// room (everything resident is pinned or busy).
    func request(_ page: Int, pinned: (Int) -> Bool) throws(OptimizerError) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        if entries[page].residentTarget { return true }
        if residentCount >= residentLimit {
            guard let victim = leastRecentlyUsed(excluding: pinned) else { return false }
            try scheduleEvict(victim)
        }
        entries[page].residentTarget = true
        residentCount += 1
        entries[page].lastUse = nextTick()
        // A zero page needs no bytes: its frame reads as zeros. Only skip the queue when it is
        // empty, so no queued eviction is still holding the RAM this page is about to use.
        if entries[page].encoding == .zero && entries[page].pendingJobs == 0 && busy == 0 { return true }
        enqueue(.load(page))
        return true
    }

    /// Waits until `page` is resident with no job pending; returns the seconds waited.
    func waitUntilReady(_ page: Int) throws(OptimizerError) -> Double {
        condition.lock()
        defer { condition.unlock() }
        precondition(entries[page].residentTarget, "page \(page) waited for without a request")
        if entries[page].pendingJobs == 0, failure == nil { return 0 }
        let start = DispatchTime.now().uptimeNanoseconds
        while entries[page].pendingJobs > 0 && failure == nil { condition.wait() }
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

    /// Evicts least recently used pages until at most `pages` are resident, and waits for it.
    func trim(toResident pages: Int) throws(OptimizerError) {
        condition.lock()
        defer { condition.unlock() }
        while residentCount > pages, let victim = leastRecentlyUsed(excluding: { _ in false }) {
            try scheduleEvict(victim)
        }
        try waitIdleLocked()
    }

    /// Changes the resident limit; pages beyond a lower limit are evicted now.
    func setResidentLimit(_ limit: Int) throws(OptimizerError) {
        precondition(limit >= 1)
        condition.lock()
        residentLimit = limit
        condition.unlock()
        if limit < pageCount {
            condition.lock()
            defer { condition.unlock() }
            try openSpill()
        }
        try trim(toResident: limit)
    }

    func waitIdle() throws(OptimizerError) {
        condition.lock()
        defer { condition.unlock() }
        try waitIdleLocked()
    }

    private func waitIdleLocked() throws(OptimizerError) {
        while busy > 0 && failure == nil { condition.wait() }
        if let failure { throw failure }
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
    func spilledForm(_ page: Int) -> (encoding: PageEncoding, bytes: UnsafeRawPointer?, storedBytes: Int, checksum: UInt64)? {
        condition.lock()
        defer { condition.unlock() }
        precondition(busy == 0)
        let entry = entries[page]
        if entry.residentTarget { return nil }
        return (entry.encoding, entry.storedBytes > 0 ? UnsafeRawPointer(spill!.slot(page)) : nil, entry.storedBytes, entry.checksum)
    }

    /// Makes `page` resident without reading what it held (checkpoint restore overwrites it),
    /// evicting to stay within the limit. The caller then fills `frame(page)`.
    func residentForOverwrite(_ page: Int) throws(OptimizerError) {
        condition.lock()
        if !entries[page].residentTarget && entries[page].pendingJobs == 0 {
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

    private func leastRecentlyUsed(excluding pinned: (Int) -> Bool) -> Int? {
        var best: Int?
        for page in 0..<pageCount where entries[page].residentTarget && entries[page].pendingJobs == 0 && !pinned(page) {
            if best == nil || entries[page].lastUse < entries[best!].lastUse { best = page }
        }
        return best
    }

    private func scheduleEvict(_ page: Int) throws(OptimizerError) {
        try openSpill()
        entries[page].residentTarget = false
        residentCount -= 1
        enqueue(.evict(page))
    }

    private func enqueue(_ job: Job) {
        switch job {
        case .evict(let page), .load(let page): entries[page].pendingJobs += 1
        }
        jobs.append(job)
        busy += 1
        condition.broadcast()
    }

    // MARK: - Worker

    private func workerLoop() {
        condition.lock()
        while true {
            while jobHead == jobs.count && !stopping { condition.wait() }
            if jobHead == jobs.count { break }
            let job = jobs[jobHead]
            jobHead += 1
            if jobHead == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                jobHead = 0
            }
            let spill = self.spill
            switch job {
            case .evict(let page):
                condition.unlock()
                let start = DispatchTime.now().uptimeNanoseconds
                let (encoding, stored) = spillPage(page, spill!)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                condition.lock()
                entries[page].encoding = encoding
                entries[page].storedBytes = stored.count
                entries[page].checksum = stored.checksum
                statistics.pagesSpilled += 1
                statistics.bytesSpilled += pageBytes
                statistics.bytesStored += stored.count
                statistics.spillSeconds += seconds
                switch encoding {
                case .zero: statistics.zeroPages += 1
                case .raw: statistics.rawPages += 1
                case .shuffledLZ4: statistics.compressedPages += 1
                }
                entries[page].pendingJobs -= 1
            case .load(let page):
                let entry = entries[page]
                condition.unlock()
                let start = DispatchTime.now().uptimeNanoseconds
                var error: OptimizerError?
                if entry.encoding != .zero {
                    do throws(OptimizerError) {
                        try verifyAndDecode(page, entry.encoding, storedBytes: entry.storedBytes, checksum: entry.checksum, spill: spill,
                                            into: frame(page), codec: codec)
                    } catch let caught {
                        error = caught
                    }
                }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                condition.lock()
                if let error, failure == nil { failure = error }
                statistics.pagesRestored += 1
                statistics.bytesRestored += pageBytes
                statistics.restoreSeconds += seconds
                entries[page].pendingJobs -= 1
            }
            busy -= 1
            condition.broadcast()
        }
        condition.unlock()
        stopped.signal()
    }

    /// Encodes the page's frame into its slot and gives the frame's RAM back.
    private func spillPage(_ page: Int, _ spill: SpillFile) -> (PageEncoding, (count: Int, checksum: UInt64)) {
        let slot = spill.slot(page)
        let (encoding, stored) = codec.encode(frame(page), into: slot)
        let checksum = stored > 0 ? qlora_xxh64(slot, stored, UInt64(page)) : 0
        if stored > 0 { spill.release(page) }
        madvise(frame(page), pageBytes, MADV_DONTNEED)
        return (encoding, (stored, checksum))
    }

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
        let found = qlora_xxh64(slot, storedBytes, UInt64(page))
        guard found == checksum else {
            throw .spillCorrupt(directory: spill.directory, page: page, detail: "checksum \(String(found, radix: 16)), expected \(String(checksum, radix: 16))")
        }
        guard codec.decode(encoding, slot, storedBytes: storedBytes, into: destination) else {
            throw .spillCorrupt(directory: spill.directory, page: page, detail: "the stored bytes do not decode to a page")
        }
    }
}
