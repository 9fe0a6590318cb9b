// Double quantization of NF4 block constants, bit-exact with bitsandbytes 0.50.2 on CPU:
// offset = torch's float32 mean of the absmax values, then blockwise 8-bit quantization of
// (absmax - offset) with the signed dynamic map, blocks of 256, using bnb's native CPU rounding.
import QLoRAKernels

/// The result of double-quantizing one tensor's absmax values (FORMAT.md, "Double quantization").
public struct DoubleQuantizedAbsmax: Sendable, Equatable {
    /// One 8-bit code per 64-block absmax: index into `DynamicMap.signed`.
    public var codes: [UInt8]
    /// One Float32 scale per 256 codes: max |absmax - offset| of that group.
    public var nestedAbsmax: [Float]
    /// The mean of all absmax values (torch float32 `mean()`), subtracted before quantizing.
    public var offset: Float
    public static let nestedBlockSize = 256

    /// Double-quantizes `absmax` (count values) as `bnb.functional.quantize_4bit(...,
    /// compress_statistics=True)` does.
    /// - Parameter threads: torch's `get_num_threads()` to emulate in the mean; it only matters for
    ///   more than 32768 blocks (torch then sums per thread, so bnb's own output depends on it).
    public init(absmax: UnsafePointer<Float>, count: Int, threads: Int = TorchFloat32Sum.defaultThreads) {
        precondition(count > 0)
        offset = TorchFloat32Sum.sum(absmax, count: count, threads: threads) / Float(count)
        var centered = [Float](repeating: 0, count: count)
        let groups = (count + Self.nestedBlockSize - 1) / Self.nestedBlockSize
        var codes = [UInt8](repeating: 0, count: count)
        var nested = [Float](repeating: 0, count: groups)
        let offset = self.offset
        centered.withUnsafeMutableBufferPointer { c in
            for i in 0..<count { c[i] = absmax[i] - offset }
            codes.withUnsafeMutableBufferPointer { q in
                nested.withUnsafeMutableBufferPointer { n in
                    blockwise8BitQuantize(q.baseAddress!, n.baseAddress!, c.baseAddress!, count: count,
                                          blockSize: Self.nestedBlockSize)
                }
            }
        }
        self.codes = codes
        nestedAbsmax = nested
    }

    public init(codes: [UInt8], nestedAbsmax: [Float], offset: Float) {
        self.codes = codes
        self.nestedAbsmax = nestedAbsmax
        self.offset = offset
    }

    /// The first-level absmax values back: `map[code] * nested[i / 256] + offset`, a Float32 product
    /// then a Float32 sum (bnb `dequantize_blockwise` then `absmax += offset`). Overwrites `out`.
    /// - Parameter map: the 256-entry dynamic map stored with the tensor.
    public func dequantize(into out: UnsafeMutablePointer<Float>, map: [Float] = DynamicMap.signed) {
        precondition(map.count == 256)
        for i in 0..<codes.count {
            out[i] = map[Int(codes[i])] * nestedAbsmax[i / Self.nestedBlockSize] + offset
        }
    }
}

/// bitsandbytes' signed dynamic 8-bit map (`functional.create_dynamic_map(signed=True)`), as the
/// Float32 bit patterns bnb 0.50.2 produces (tests check it against the reference fixture).
public enum DynamicMap {
    public static let signed: [Float] = signedBits.map { Float(bitPattern: $0) }
    /// `signed` at a fixed address for C kernels (allocated once, never freed).
    nonisolated(unsafe) public static let signedPointer: UnsafePointer<Float> = permanentCopy(signed)

    static let signedBits: [UInt32] = [
        0xBF7E3333, 0xBF7A999A, 0xBF770000, 0xBF736666, 0xBF6FCCCD, 0xBF6C3333, 0xBF68999A, 0xBF650000,
        0xBF616666, 0xBF5DCCCD, 0xBF5A3333, 0xBF56999A, 0xBF530000, 0xBF4F6666, 0xBF4BCCCD, 0xBF483333,
        0xBF44999A, 0xBF410000, 0xBF3D6666, 0xBF39CCCD, 0xBF363334, 0xBF32999A, 0xBF2F0000, 0xBF2B6666,
        0xBF27CCCD, 0xBF243334, 0xBF20999A, 0xBF1D0000, 0xBF196666, 0xBF15CCCD, 0xBF123334, 0xBF0E999A,
        0xBF0B0000, 0xBF076666, 0xBF03CCCC, 0xBF003333, 0xBEF93332, 0xBEF20000, 0xBEEACCCC, 0xBEE3999A,
        0xBEDC6666, 0xBED53333, 0xBECE0000, 0xBEC6CCCC, 0xBEBF999A, 0xBEB86666, 0xBEB13333, 0xBEAA0000,
        0xBEA2CCCC, 0xBE9B999A, 0xBE946666, 0xBE8D3334, 0xBE860000, 0xBE7D9999, 0xBE6F3333, 0xBE60CCCD,
        0xBE526666, 0xBE440000, 0xBE35999A, 0xBE273333, 0xBE18CCCD, 0xBE0A6666, 0xBDF80000, 0xBDDB3334,
        0xBDC9EB85, 0xBDC428F7, 0xBDBE6667, 0xBDB8A3D7, 0xBDB2E148, 0xBDAD1EB8, 0xBDA75C2A, 0xBDA1999A,
        0xBD9BD70A, 0xBD96147B, 0xBD9051EB, 0xBD8A8F5D, 0xBD84CCCD, 0xBD7E147B, 0xBD728F5D, 0xBD670A3D,
        0xBD5B851F, 0xBD500000, 0xBD447AE1, 0xBD38F5C3, 0xBD2D70A3, 0xBD21EB85, 0xBD166667, 0xBD0AE148,
        0xBCFEB852, 0xBCE7AE15, 0xBCD0A3D7, 0xBCB9999A, 0xBCA28F5D, 0xBC8B851F, 0xBC68F5C3, 0xBC3AE148,
        0xBC1F3B64, 0xBC160418, 0xBC0CCCCD, 0xBC039581, 0xBBF4BC6A, 0xBBE24DD3, 0xBBCFDF3B, 0xBBBD70A4,
        0xBBAB020D, 0xBB989374, 0xBB8624DD, 0xBB676C8A, 0xBB428F5C, 0xBB1DB22D, 0xBAF1A9FC, 0xBAA7EF9D,
        0xBA7765FF, 0xBA59E83E, 0xBA3C6A80, 0xBA1EECC1, 0xBA016F01, 0xB9C7E283, 0xB98CE705, 0xB923D70B,
        0xB8BA1F4B, 0xB88AEFB3, 0xB8378034, 0xB7B24206, 0xB70205FF, 0xB65A1A94, 0xB513A3B7, 0x00000000,
        0x3513A3B7, 0x365A1A94, 0x370205FF, 0x37B24206, 0x38378034, 0x388AEFB3, 0x38BA1F4B, 0x3923D70B,
        0x398CE705, 0x39C7E283, 0x3A016F01, 0x3A1EECC1, 0x3A3C6A80, 0x3A59E83E, 0x3A7765FF, 0x3AA7EF9D,
        0x3AF1A9FC, 0x3B1DB22D, 0x3B428F5C, 0x3B676C8A, 0x3B8624DD, 0x3B989374, 0x3BAB020D, 0x3BBD70A4,
        0x3BCFDF3B, 0x3BE24DD3, 0x3BF4BC6A, 0x3C039581, 0x3C0CCCCD, 0x3C160418, 0x3C1F3B64, 0x3C3AE148,
        0x3C68F5C3, 0x3C8B851F, 0x3CA28F5D, 0x3CB9999A, 0x3CD0A3D7, 0x3CE7AE15, 0x3CFEB852, 0x3D0AE148,
        0x3D166667, 0x3D21EB85, 0x3D2D70A3, 0x3D38F5C3, 0x3D447AE1, 0x3D500000, 0x3D5B851F, 0x3D670A3D,
        0x3D728F5D, 0x3D7E147B, 0x3D84CCCD, 0x3D8A8F5D, 0x3D9051EB, 0x3D96147B, 0x3D9BD70A, 0x3DA1999A,
        0x3DA75C2A, 0x3DAD1EB8, 0x3DB2E148, 0x3DB8A3D7, 0x3DBE6667, 0x3DC428F7, 0x3DC9EB85, 0x3DDB3334,
        0x3DF80000, 0x3E0A6666, 0x3E18CCCD, 0x3E273333, 0x3E35999A, 0x3E440000, 0x3E526666, 0x3E60CCCD,
        0x3E6F3333, 0x3E7D9999, 0x3E860000, 0x3E8D3334, 0x3E946666, 0x3E9B999A, 0x3EA2CCCC, 0x3EAA0000,
        0x3EB13333, 0x3EB86666, 0x3EBF999A, 0x3EC6CCCC, 0x3ECE0000, 0x3ED53333, 0x3EDC6666, 0x3EE3999A,
        0x3EEACCCC, 0x3EF20000, 0x3EF93332, 0x3F003333, 0x3F03CCCC, 0x3F076666, 0x3F0B0000, 0x3F0E999A,
        0x3F123334, 0x3F15CCCD, 0x3F196666, 0x3F1D0000, 0x3F20999A, 0x3F243334, 0x3F27CCCD, 0x3F2B6666,
        0x3F2F0000, 0x3F32999A, 0x3F363334, 0x3F39CCCD, 0x3F3D6666, 0x3F410000, 0x3F44999A, 0x3F483333,
        0x3F4BCCCD, 0x3F4F6666, 0x3F530000, 0x3F56999A, 0x3F5A3333, 0x3F5DCCCD, 0x3F616666, 0x3F650000,
        0x3F68999A, 0x3F6C3333, 0x3F6FCCCD, 0x3F736666, 0x3F770000, 0x3F7A999A, 0x3F7E3333, 0x3F800000
    ]

    /// bnb's CPU rounding table: the map index nearest to each point `(g / 65535) * 2 - 1` of a
    /// uint16 grid over [-1, 1] (ties to the lower index). Rounding a value to the grid first is why
    /// about 1 code in 1,000 differs from exact nearest (see FORMAT.md).
    static let gridTable: [UInt8] = {
        let map = signed
        return (0..<65536).map { g in
            let x = (Float(g) / 65535) * 2 - 1
            var upper = 0
            while upper < 256 && map[upper] < x { upper += 1 }
            if upper == 0 { return 0 }
            if upper == 256 { return 255 }
            return abs(x - map[upper]) < abs(x - map[upper - 1]) ? UInt8(upper) : UInt8(upper - 1)
        }
    }()
}

/// Blockwise 8-bit quantization with the signed dynamic map, bnb 0.50.2's native CPU rule:
/// per block `absmax = max|v|`, `n = clamp(v * (1 / absmax), -1, 1)`, grid index
/// `g = UInt16((n + 1) * 0.5 * 65535 + 0.5)`, code `DynamicMap.gridTable[g]`. An all-zero block
/// gets code 0 (bnb's 0 * inf = NaN lands there). Overwrites `codes` (count) and `absmax`
/// (ceil(count / blockSize)).
public func blockwise8BitQuantize(
    _ codes: UnsafeMutablePointer<UInt8>, _ absmax: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
    count: Int, blockSize: Int
) {
    precondition(blockSize > 0 && count >= 0)
    DynamicMap.gridTable.withUnsafeBufferPointer { table in
        var start = 0
        var block = 0
        while start < count {
            let end = min(count, start + blockSize)
            var blockMax: Float = 0
            for i in start..<end { blockMax = max(blockMax, abs(input[i])) }
            absmax[block] = blockMax
            if blockMax == 0 {
                for i in start..<end { codes[i] = 0 }
            } else {
                let reciprocal = 1 / blockMax
                for i in start..<end {
                    let n = min(max(input[i] * reciprocal, -1), 1)
                    let grid = ((n + 1) * 0.5) * 65535 + 0.5
                    codes[i] = table[Int(UInt16(grid))]
                }
            }
            start = end
            block += 1
        }
    }
}

/// PyTorch's float32 `Tensor.sum()` over a contiguous 1-D tensor, reproduced bit for bit
/// (aten/src/ATen/native/cpu/SumKernel.cpp `cascade_sum`, TensorIteratorReduce.cpp
/// `two_pass_reduction`): 8-lane vectors, 4-way ILP, a 4-level cascade, and above 32768 elements
/// one partial sum per thread added at the end. Measured against torch 2.15 on 1 and 2 threads.
public enum TorchFloat32Sum {
    static let lanes = 8
    static let grainSize = 32768
    /// torch's default thread count is the number of cores.
    public static var defaultThreads: Int { ProcessInfoCores.count }

    public static func sum(_ x: UnsafePointer<Float>, count: Int, threads: Int) -> Float {
        if count < grainSize || threads <= 1 { return 0 + innerSum(x, count: count) }
        let workers = min(threads, (count + grainSize - 1) / grainSize)
        let chunk = (count + workers - 1) / workers
        var partials = [Float](repeating: 0, count: threads)
        for t in 0..<workers where t * chunk < count {
            partials[t] = 0 + innerSum(x + t * chunk, count: min(count, (t + 1) * chunk) - t * chunk)
        }
        return partials.withUnsafeBufferPointer { 0 + innerSum($0.baseAddress!, count: threads) }
    }

    /// `vectorized_inner_sum` (count >= 8) or the scalar `row_sum` path.
    static func innerSum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        if count < lanes {
            return rowSum(count: count, width: 1) { i, _ in x[i] }[0]
        }
        let vectors = count / lanes
        let acc = rowSum(count: vectors, width: lanes) { i, lane in x[i * lanes + lane] }
        var total: Float = 0
        for k in (vectors * lanes)..<count { total += x[k] }
        for lane in 0..<lanes { total += acc[lane] }
        return total
    }

    /// `row_sum`: the row seen as (-1, 4) rows of `width`-lane items, summed by `multiRowSum`,
    /// leftovers into row 0, then rows 1...3 into row 0.
    static func rowSum(count: Int, width: Int, _ load: (Int, Int) -> Float) -> [Float] {
        let ilp = 4
        let rows = count / ilp
        var partial = multiRowSum(count: rows, rows: ilp, width: width) { i, row, lane in load(i * ilp + row, lane) }
        for i in (rows * ilp)..<count {
            for lane in 0..<width { partial[0][lane] += load(i, lane) }
        }
        for row in 1..<ilp {
            for lane in 0..<width { partial[0][lane] += partial[row][lane] }
        }
        return partial[0]
    }

    /// `multi_row_sum`: 4-level cascade with level steps of 2^max(4, ceil(log2 n) / 4).
    static func multiRowSum(count: Int, rows: Int, width: Int, _ load: (Int, Int, Int) -> Float) -> [[Float]] {
        let levels = 4
        let ceilLog2 = count <= 1 ? 0 : Int.bitWidth - (count - 1).leadingZeroBitCount
        let levelPower = max(4, ceilLog2 / levels)
        let levelStep = 1 << levelPower
        let levelMask = levelStep - 1
        var acc = [[[Float]]](repeating: [[Float]](repeating: [Float](repeating: 0, count: width), count: rows), count: levels)
        var i = 0
        while i + levelStep <= count {
            for _ in 0..<levelStep {
                for row in 0..<rows { for lane in 0..<width { acc[0][row][lane] += load(i, row, lane) } }
                i += 1
            }
            for level in 1..<levels {
                for row in 0..<rows {
                    for lane in 0..<width {
                        acc[level][row][lane] += acc[level - 1][row][lane]
                        acc[level - 1][row][lane] = 0
                    }
                }
                if i & (levelMask << (level * levelPower)) != 0 { break }
            }
        }
        while i < count {
            for row in 0..<rows { for lane in 0..<width { acc[0][row][lane] += load(i, row, lane) } }
            i += 1
        }
        for level in 1..<levels {
            for row in 0..<rows { for lane in 0..<width { acc[0][row][lane] += acc[level][row][lane] } }
        }
        return acc[0]
    }
}

