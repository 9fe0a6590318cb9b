// One allocation per category of memory (llm.c): sizes are computed up front, pieces are carved
// from it in order, and nothing is allocated afterwards.

/// A 64-byte aligned block of Float32, zeroed, carved into named pieces.
public final class Arena: @unchecked Sendable {
    public let name: String
    public let capacity: Int
    private let base: UnsafeMutablePointer<Float>
    private var used = 0

    /// - Parameter sizes: the Float counts of every piece that will be carved, to size it exactly.
    public init(name: String, sizes: [Int]) {
        self.name = name
        capacity = Self.byteCount(sizes: sizes) / 4
        base = UnsafeMutableRawPointer.allocate(byteCount: max(64, 4 * capacity), alignment: 64)
            .bindMemory(to: Float.self, capacity: max(16, capacity))
        base.initialize(repeating: 0, count: capacity)
    }

    deinit { base.deallocate() }

    public var byteCount: Int { 4 * capacity }

    /// `byteCount` of an arena made with `sizes`.
    public static func byteCount(sizes: [Int]) -> Int { 4 * sizes.reduce(0) { $0 + padded($1) } }

    /// The next `count` floats (each piece starts on a 64-byte boundary).
    public func carve(_ count: Int) -> UnsafeMutablePointer<Float> {
        precondition(used + Self.padded(count) <= capacity, "arena \(name) is too small: sizes and carving disagree")
        defer { used += Self.padded(count) }
        return base + used
    }

    private static func padded(_ count: Int) -> Int { (count + 15) / 16 * 16 }
}
