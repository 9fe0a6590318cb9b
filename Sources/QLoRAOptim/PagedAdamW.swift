// AdamW with torch.optim.AdamW's semantics and clip_grad_norm_'s global-norm clipping, over the
// trainable ranges of one flat parameter array, with the first and second moments in pages that
// a resident budget keeps in RAM and the rest in an LZ4-compressed spill file (PageStore).
// Parameters and gradients stay with the caller; only the optimizer state is paged.
import QLoRAKernels
#if canImport(Glibc)
import Glibc
#endif

public struct PagedAdamWConfig: Sendable, Equatable {
    public var adamW: AdamWConfig
    /// `max_norm` of torch.nn.utils.clip_grad_norm_ (L2 over all trainable gradients); nil: no clipping.
    public var maxGradNorm: Double?
    /// Bytes of one page, which holds the first and then the second moment of `pageBytes / 8`
    /// consecutive trainable values; a multiple of 4096. The default is the size benchmarks/optim-bench
    /// measured best (benchmarks/README.md).
    public var pageBytes: Int
    /// RAM the optimizer state may hold (whole pages); nil keeps all of it resident.
    public var residentBytes: Int?
    /// Where the spill file is created; it is unlinked at once and so removed at exit.
    public var spillDirectory: String
    /// Pages brought back ahead of their update (bounded by the resident budget).
    public var prefetchPages: Int

    public static let defaultPageBytes = 1 << 20

    public init(adamW: AdamWConfig = AdamWConfig(), maxGradNorm: Double? = nil, pageBytes: Int = defaultPageBytes,
                residentBytes: Int? = nil, spillDirectory: String = defaultSpillDirectory, prefetchPages: Int = 2) {
        self.adamW = adamW
        self.maxGradNorm = maxGradNorm
        self.pageBytes = pageBytes
        self.residentBytes = residentBytes
        self.spillDirectory = spillDirectory
        self.prefetchPages = prefetchPages
    }

    /// $TMPDIR, else /tmp.
    public static var defaultSpillDirectory: String {
        if let value = getenv("TMPDIR"), value[0] != 0 { return String(cString: value) }
        return "/tmp"
    }
}

public final class PagedAdamW {
    /// What one step did.
    public struct StepReport: Sendable {
        /// L2 norm of all trainable gradients before clipping (what clip_grad_norm_ returns).
        public var gradientNorm: Double
        /// The factor the gradients were multiplied by (1 when not clipped).
        public var clipScale: Float
        /// Time this step waited for pages to come back.
        public var stallSeconds: Double
    }

    /// A run of trainable values that falls in one page: state index within the page, parameter index.
    struct Segment {
        let stateOffset: Int
        let parameterOffset: Int
        let count: Int
    }

    public let config: PagedAdamWConfig
    /// Length of the parameter and gradient arrays `step` takes.
    public let parameterCount: Int
    /// Trainable values, i.e. the length of each moment.
    public let stateCount: Int
    /// Values per moment in one page.
    public let pageElements: Int
    /// Completed steps (torch's `state["step"]`).
    public internal(set) var stepCount = 0
    let store: PageStore
    /// The trainable ranges, empty ones dropped.
    let trainable: [Range<Int>]
    let segments: [Segment]
    /// Page p's segments are segments[pageSegments[p] ..< pageSegments[p + 1]].
    let pageSegments: [Int]

    /// - Parameters:
    ///   - trainable: ascending, disjoint index ranges of the parameter array that this optimizer updates
    ///     (frozen tensors such as LoRA-FA's A are left out); the moments cover them in this order.
    ///   - parameterCount: length of the parameter and gradient arrays.
    /// - Throws: `residentBudgetTooSmall` below one page; spill file errors when not everything fits.
    public init(trainable: [Range<Int>], parameterCount: Int, config: PagedAdamWConfig) throws(OptimizerError) {
        precondition(config.pageBytes >= 4096 && config.pageBytes % 4096 == 0, "pageBytes must be a positive multiple of 4096")
        precondition(config.prefetchPages >= 0)
        var previousEnd = 0
        for range in trainable {
            precondition(range.lowerBound >= previousEnd && range.upperBound <= parameterCount, "trainable ranges must ascend inside the parameters")
            previousEnd = range.upperBound
        }
        self.config = config
        self.parameterCount = parameterCount
        self.trainable = trainable.filter { !$0.isEmpty }
        pageElements = config.pageBytes / 8
        var segments: [Segment] = []
        var pageSegments = [0]
        var filled = 0
        for range in trainable {
            var start = range.lowerBound
            while start < range.upperBound {
                let take = min(range.upperBound - start, pageElements - filled)
                segments.append(Segment(stateOffset: filled, parameterOffset: start, count: take))
                filled += take
                start += take
                if filled == pageElements {
                    pageSegments.append(segments.count)
                    filled = 0
                }
            }
        }
        if filled > 0 { pageSegments.append(segments.count) }
        precondition(!segments.isEmpty, "nothing to optimize")
        self.segments = segments
        self.pageSegments = pageSegments
        stateCount = segments.reduce(0) { $0 + $1.count }
        let pageCount = pageSegments.count - 1
        let limit = try Self.residentPageLimit(bytes: config.residentBytes, pageBytes: config.pageBytes, pageCount: pageCount)
        let stateBytes = (0..<pageCount).map { page in segments[pageSegments[page]..<pageSegments[page + 1]].reduce(0) { $0 + $1.count * 8 } }
        store = try PageStore(pageBytes: config.pageBytes, stateBytes: stateBytes, residentLimit: limit, spillDirectory: config.spillDirectory)
    }

    deinit { store.shutdown() }

    public var pageCount: Int { store.pageCount }
    public var residentPages: Int { store.residentPages }
    public var residentPageLimit: Int { store.residentLimit }
    public var statistics: PagingStatistics { store.statisticsSnapshot }
    public func resetStatistics() { store.resetStatistics() }
    /// True when the spill directory is on tmpfs/ramfs, where spilling frees no RAM.
    public var spillIsInMemory: Bool { store.spillFile?.inMemoryFileSystem ?? false }

    /// RAM of the optimizer at its peak for `stateCount` trainable values: the resident pages, one
    /// page of byte-plane scratch each for the loading and the evicting thread, and two pages more
    /// while a checkpoint is saved or the compression surveyed.
    public static func peakBytes(stateCount: Int, config: PagedAdamWConfig) -> Int {
        let pages = (stateCount * 8 + config.pageBytes - 1) / config.pageBytes
        let resident = min(pages, (config.residentBytes ?? Int.max) / config.pageBytes)
        return (resident + 4) * config.pageBytes
    }

    /// Sets the RAM budget of the state (see `PagedAdamWConfig.residentBytes`); pages over it are spilled now.
    public func setResidentBytes(_ bytes: Int?) throws(OptimizerError) {
        try store.setResidentLimit(Self.residentPageLimit(bytes: bytes, pageBytes: config.pageBytes, pageCount: pageCount))
    }

    /// Pages a budget of `bytes` holds (all `pageCount` when nil); throws below one page.
    private static func residentPageLimit(bytes: Int?, pageBytes: Int, pageCount: Int) throws(OptimizerError) -> Int {
        guard let bytes else { return pageCount }
        guard bytes >= pageBytes else { throw .residentBudgetTooSmall(bytes: bytes, minimum: pageBytes) }
        return min(pageCount, bytes / pageBytes)
    }

    /// Spills every resident page and waits until their RAM is returned.
    public func evictAll() throws(OptimizerError) { try store.trim(toResident: 0) }

    /// L2 norm over the trainable gradients, accumulated in double per trainable range (so it
    /// does not depend on the page size, and a resumed run clips exactly as the first did).
    public func gradientNorm(_ gradients: UnsafePointer<Float>) -> Double {
        var sum = 0.0
        for range in trainable { sum += sumOfSquares(gradients + range.lowerBound, count: range.count) }
        return sum.squareRoot()
    }

    /// One optimizer step: clips the gradients by their global norm (when configured), then applies
    /// AdamW to every trainable value, page by page. Each page is brought back before its update and
    /// the next `prefetchPages` are requested ahead; the scan alternates direction between steps so
    /// that the pages left resident by one step are the first the next one needs.
    /// - Parameter learningRate: this step's rate (a schedule's value, as torch's LR schedulers set
    ///   the group's `lr`); nil uses `config.adamW.learningRate`.
    /// - Throws: `nonFiniteGradient` (nothing is changed) and spill errors.
    public func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     learningRate: Double? = nil) throws(OptimizerError) -> StepReport {
        let norm = gradientNorm(gradients)
        guard norm.isFinite else { throw .nonFiniteGradient(norm: norm) }
        var scale: Float = 1
        if let maxNorm = config.maxGradNorm {
            // clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, in float32.
            scale = min(Float(maxNorm) / (Float(norm) + 1e-6), 1)
        }
        let step = stepCount + 1
        var adamW = config.adamW
        if let learningRate { adamW.learningRate = learningRate }
        let count = pageCount
        let ascending = step % 2 == 1
        let depth = min(config.prefetchPages, store.residentLimit - 1)
        var stall = 0.0
        for position in 0..<count {
            let page = ascending ? position : count - 1 - position
            let windowEnd = min(position + depth, count - 1)
            let pinned: (Int) -> Bool = { other in
                let otherPosition = ascending ? other : count - 1 - other
                return otherPosition >= position && otherPosition <= windowEnd
            }
            for ahead in position...windowEnd {
                let requested = try store.request(ascending ? ahead : count - 1 - ahead, pinned: pinned)
                precondition(requested || ahead > position, "no page could make room for the page being updated")
                if !requested { break }
            }
            stall += try store.waitUntilReady(page)
            let moments = store.frame(page).assumingMemoryBound(to: Float.self)
            for segment in segments[pageSegments[page]..<pageSegments[page + 1]] {
                adamWStep(parameters + segment.parameterOffset, gradients + segment.parameterOffset,
                          moments + segment.stateOffset, moments + pageElements + segment.stateOffset,
                          count: segment.count, step: step, config: adamW, gradientScale: scale)
            }
            store.markUsed(page)
        }
        store.releaseFreeFrames()
        stepCount = step
        return StepReport(gradientNorm: norm, clipScale: scale, stallSeconds: stall)
    }
}
