// The safetensors reader and writer: round trips, every rejection the format calls for, and
// random or mutated bytes that must never crash the parser.
import Foundation
import Testing
import QLoRAIO
import _TestSupport

struct SafetensorsTests {
    /// A valid file: a BF16 [2, 3], a U8 [5] and a late F32 [2], written by our writer.
    func writeSample(_ path: String) throws -> [UInt8] {
        let writer = try SafetensorsWriter(path: path, planned: [
            .init(name: "a.weight", dtype: .BF16, shape: [2, 3]), .init(name: "b", dtype: .U8, shape: [5]),
        ], lateTensors: 1, longestLateName: 8)
        let a: [UInt16] = [1, 2, 3, 4, 5, 6], b: [UInt8] = [9, 8, 7, 6, 5]
        try a.withUnsafeBytes { try writer.write("a.weight", bytes: $0.baseAddress!, count: 12) }
        try b.withUnsafeBytes { try writer.write("b", at: 2, bytes: $0.baseAddress! + 2, count: 3) }
        try b.withUnsafeBytes { try writer.write("b", bytes: $0.baseAddress!, count: 2) }
        try writer.appendLate("late", dtype: .F32, shape: [2], bytes: [0, 0, 128, 63, 0, 0, 0, 64])
        try writer.finish(metadata: ["format": "pt"])
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test func writerOutputReadsBack() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/x.safetensors"
        _ = try writeSample(path)
        #expect(!FileManager.default.fileExists(atPath: AtomicOutput.partialFile(for: path)))
        let file = try SafetensorsFile(path: path)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.tensors.map(\.name) == ["a.weight", "b", "late"])
        let b = try #require(file.tensor(named: "b"))
        #expect(Array(UnsafeRawBufferPointer(start: file.data(of: b), count: 5)) == [9, 8, 7, 6, 5])
        let late = try #require(file.tensor(named: "late"))
        #expect(file.data(of: late).loadUnaligned(fromByteOffset: 4, as: Float.self) == 2)
        #expect(late.dtype == .F32 && late.shape == [2])
    }

    @Test func abandonedWriterLeavesNothing() throws {
        let directory = try TemporaryDirectory()
        do {
            let writer = try SafetensorsWriter(path: directory.path + "/x.safetensors", planned: [.init(name: "t", dtype: .F32, shape: [4])],
                                               lateTensors: 0, longestLateName: 0)
            _ = writer
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    /// Builds a file from a header text and a data section.
    func file(header: String, data: [UInt8], in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/\(UUID().uuidString).safetensors"
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { [UInt8]($0) }
        bytes += Array(header.utf8) + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: [
        (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "truncated"),
        (#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "needs 12 bytes"),
        (#"{"t":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, 8, "unknown dtype"),
        (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, 8, "begin <= end"),
        (#"{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, 8, "non-negative"),
        (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "overlaps"),
        (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, 12, "twice"),
        (#"{"t":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,8]}}"#, 8, "shape"),
        (#"["t"]"#, 0, "not a JSON object"),
        (#"{"t":"#, 0, "not a JSON object"),
        (#"{"__metadata__":{"a":1}}"#, 0, "__metadata__"),
    ])
    func invalidHeadersAreRejectedWithTheReason(header: String, dataBytes: Int, reason: String) throws {
        let directory = try TemporaryDirectory()
        let path = try file(header: header, data: [UInt8](repeating: 0, count: dataBytes), in: directory)
        #expect { try SafetensorsFile(path: path) } throws: { error in
            "\(error)".contains(path) && "\(error)".contains(reason)
        }
    }

    @Test func hugeOrShortHeaderLengthIsRejected() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/h.safetensors"
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x7B]).write(to: URL(fileURLWithPath: path))
        #expect { try SafetensorsFile(path: path) } throws: { "\($0)".contains("exceeds") || "\($0)".contains("truncated") }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect { try SafetensorsFile(path: path) } throws: { "\($0)".contains("fewer than the 8-byte") }
    }

    /// Mutations of a valid file and random bytes: the parser throws or succeeds, never traps, and
    /// whatever it accepts has every tensor inside the file.
    @Test func randomAndMutatedBytesNeverCrashTheParser() throws {
        let directory = try TemporaryDirectory()
        let valid = try writeSample(directory.path + "/valid.safetensors")
        var rng = SplitMix64(seed: 2024)
        var accepted = 0, rejected = 0
        for round in 0..<3000 {
            var bytes = valid
            if round % 10 == 9 {
                bytes = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let position = Int(rng.next() % UInt64(max(1, bytes.count)))
                    switch rng.next() % 4 {
                    case 0: if !bytes.isEmpty { bytes[position] ^= UInt8(1 << (rng.next() % 8)) }
                    case 1: bytes = Array(bytes.prefix(position))
                    case 2: if !bytes.isEmpty { bytes[position] = UInt8(ascii: ["0", "9", "\"", "{", "]", "-", "e"][Int(rng.next() % 7)]) }
                    default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: min(position, bytes.count))
                    }
                }
            }
            let path = directory.path + "/fuzz.safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try SafetensorsFile(path: path)
                for tensor in file.tensors { #expect(file.file.contains(offset: tensor.fileOffset, count: tensor.byteCount)) }
                accepted += 1
            } catch {
                rejected += 1
            }
        }
        // Most mutations land in the space-padded header and break it; some must still parse (47 of 3000 here).
        #expect(accepted > 20 && rejected > 1000, "accepted \(accepted), rejected \(rejected)")
    }
}
