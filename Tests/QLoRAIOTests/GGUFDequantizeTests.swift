// ggmlDequantizeRow and GGUFFile.dequantizeRows against values gguf-py's gguf.quants.dequantize
// produced (tools/reference/make_gguf_fixtures.py). Float32 dequantization repeats ggml's exact
// operations, so the comparison is bitwise (NaN payloads included), with no tolerance.
import Foundation
import QLoRAIO
import Testing
import _TestSupport

private struct Manifest: Decodable {
    struct Case: Decodable {
        let type: String
        let type_id: UInt32
        let rows: Int
        let row_length: Int
        let row_bytes: Int
        let blocks: String
        let expected: String
    }
    struct TensorEntry: Decodable {
        let name: String
        let offset: Int
        let count: Int
    }
    struct FileEntry: Decodable {
        let gguf: String
        let expected: String?
        let tensors: [TensorEntry]
    }
    let gguf_version: String
    let dequantize: [Case]
    let files: [FileEntry]
}

private let fixtureDir = fixturesDirectory("gguf")

private func loadManifest() throws -> Manifest {
    try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: fixtureDir.appendingPathComponent("manifest.json")))
}

private func loadBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: fixtureDir.appendingPathComponent(name)))
}

private func loadFloats(_ name: String) throws -> [Float] {
    let bytes = try loadBytes(name)
    return stride(from: 0, to: bytes.count, by: 4).map { i in
        Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
    }
}

/// Bitwise comparison; reports the count and the first five differing elements.
private func bitwiseMismatches(_ actual: [Float], _ expected: [Float]) -> (count: Int, first: [String]) {
    var count = 0
    var first: [String] = []
    for i in 0..<min(actual.count, expected.count) where actual[i].bitPattern != expected[i].bitPattern {
        count += 1
        if first.count < 5 { first.append("[\(i)] \(actual[i]) vs \(expected[i])") }
    }
    return (count + abs(actual.count - expected.count), first)
}

@Test func ggmlTypeTableMatchesGGML() {
    // ggml-common.h static_asserts: sizeof(block_*) and QK_* per type.
    let expected: [(GGMLType, Int, Int)] = [
        (.f32, 1, 4), (.f16, 1, 2), (.bf16, 1, 2), (.q4_0, 32, 18), (.q4_1, 32, 20), (.q5_0, 32, 22), (.q5_1, 32, 24),
        (.q8_0, 32, 34), (.q8_1, 32, 36), (.q2_K, 256, 84), (.q3_K, 256, 110), (.q4_K, 256, 144), (.q5_K, 256, 176),
        (.q6_K, 256, 210), (.q8_K, 256, 292), (.iq4_NL, 32, 18), (.iq4_XS, 256, 136), (.mxfp4, 32, 17),
    ]
    for (type, block, size) in expected {
        #expect(type.blockSize == block && type.typeSize == size, "\(type)")
    }
    #expect(GGMLType(rawValue: 30) == .bf16 && GGMLType(rawValue: 4) == nil && GGMLType(rawValue: 31) == nil)
    #expect(GGMLType.q4_K.description == "Q4_K" && GGMLType.iq2_XXS.description == "IQ2_XXS")
    #expect(GGMLType.q4_0.rowBytes(64) == 36 && GGMLType.q4_0.rowBytes(65) == nil && GGMLType.q6_K.rowBytes(Int.max / 2) == nil)
}

@Test(arguments: ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
func ggmlDequantizeMatchesGGUFPy(typeName: String) throws {
    let manifest = try loadManifest()
    #expect(manifest.gguf_version == "0.19.0")
    let c = try #require(manifest.dequantize.first { $0.type == typeName }, "no fixture for \(typeName)")
    let type = try #require(GGMLType(rawValue: c.type_id))
    #expect(type.description == typeName && type.rowBytes(c.row_length) == c.row_bytes)
    let blocks = try loadBytes(c.blocks)
    let expected = try loadFloats(c.expected)
    #expect(blocks.count == c.rows * c.row_bytes && expected.count == c.rows * c.row_length)

    // Rows dequantized one by one, from a source shifted by one byte so every load is unaligned.
    var actual = [Float](repeating: .nan, count: expected.count)
    let shifted = [0xEE] + blocks
    shifted.withUnsafeBytes { raw in
        actual.withUnsafeMutableBufferPointer { out in
            for r in 0..<c.rows {
                ggmlDequantizeRow(out.baseAddress! + r * c.row_length, raw.baseAddress! + 1 + r * c.row_bytes, type: type, count: c.row_length)
            }
        }
    }
    let result = bitwiseMismatches(actual, expected)
    #expect(result.count == 0, "\(typeName): \(result.count) elements differ from gguf-py: \(result.first)")

    // All rows in one call give the same bits.
    var whole = [Float](repeating: .nan, count: expected.count)
    blocks.withUnsafeBytes { raw in
        whole.withUnsafeMutableBufferPointer { ggmlDequantizeRow($0.baseAddress!, raw.baseAddress!, type: type, count: expected.count) }
    }
    #expect(bitwiseMismatches(whole, expected).count == 0)
}

@Test func ggufDequantizeRowsMatchesGGUFPyOnWriterFile() throws {
    let manifest = try loadManifest()
    let entry = try #require(manifest.files.first { $0.gguf == "tiny-llama.gguf" })
    let file = try GGUFFile(path: fixtureDir.appendingPathComponent(entry.gguf).path)
    let expected = try loadFloats(try #require(entry.expected))
    #expect(!entry.tensors.isEmpty)
    for e in entry.tensors {
        let t = try #require(file.tensor(named: e.name))
        #expect(t.elementCount == e.count)
        try file.requireDequantizable(t)
        let want = Array(expected[e.offset..<e.offset + e.count])
        var all = [Float](repeating: .nan, count: t.elementCount)
        all.withUnsafeMutableBufferPointer { file.dequantizeRows(of: t, firstRow: 0, rowCount: t.rowCount, into: $0.baseAddress!) }
        let result = bitwiseMismatches(all, want)
        #expect(result.count == 0, "\(e.name): \(result.first)")
        // A row range in the middle matches the same slice.
        if t.rowCount >= 3 {
            var part = [Float](repeating: .nan, count: 2 * t.rowLength)
            part.withUnsafeMutableBufferPointer { file.dequantizeRows(of: t, firstRow: 1, rowCount: 2, into: $0.baseAddress!) }
            #expect(bitwiseMismatches(part, Array(want[t.rowLength..<3 * t.rowLength])).count == 0, "\(e.name) rows 1..<3")
        }
    }
}

@Test func ggmlDequantizeQ4_0HandWorkedBlock() {
    // d = 0.5 (f16 0x3800); byte j = j | (15 - j) << 4: element j -> (j - 8) * 0.5, element j+16 -> (7 - j) * 0.5.
    var block: [UInt8] = [0x00, 0x38]
    for j in 0..<16 { block.append(UInt8(j) | UInt8(15 - j) << 4) }
    var out = [Float](repeating: 0, count: 32)
    block.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { ggmlDequantizeRow($0.baseAddress!, raw.baseAddress!, type: .q4_0, count: 32) } }
    for j in 0..<16 {
        #expect(out[j] == Float(j - 8) * 0.5)
        #expect(out[j + 16] == Float(7 - j) * 0.5)
    }
}
