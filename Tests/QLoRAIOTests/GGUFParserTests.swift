// GGUFFile on hostile input: specific broken files must fail with the right error naming the
// tensor, and thousands of seeded mutations, truncations and random files must throw or parse,
// never crash. Plus the reader on a file made by gguf-py's GGUFWriter.
import Foundation
import QLoRAIO
import QLoRATokenizer
import Testing
import _TestSupport

/// A small valid file: every scalar type, arrays (one nested), a tokenizer, four tensors.
private func validBuilder() -> GGUFBuilder {
    var b = GGUFBuilder()
    b.metadata = [
        ("general.architecture", .string("llama")),
        ("llama.context_length", .uint32(128)),
        ("test.u8", .uint8(7)), ("test.i8", .int8(-7)), ("test.u16", .uint16(700)), ("test.i16", .int16(-700)),
        ("test.i32", .int32(-70000)), ("test.u64", .uint64(1 << 40)), ("test.i64", .int64(-(1 << 40))),
        ("test.f32", .float32(0.5)), ("test.f64", .float64(-0.25)), ("test.bool", .bool(true)),
        ("test.nested", .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.string, [.string("x")])])),
        ("tokenizer.ggml.model", .string("gpt2")),
        ("tokenizer.ggml.tokens", .array(.string, ["a", "b", "ab", "<|end|>"].map { .string($0) })),
        ("tokenizer.ggml.token_type", .array(.int32, [1, 1, 1, 3].map { .int32($0) })),
        ("tokenizer.ggml.merges", .array(.string, [.string("a b")])),
        ("tokenizer.ggml.eos_token_id", .uint32(3)),
    ]
    b.addTensor("token_embd.weight", [32, 4], type: .q8_0, fill: 0x21)
    b.addTensor("blk.0.attn_q.weight", [256, 2], type: .q4_K, fill: 0x3C)
    b.addTensor("output_norm.weight", [32], type: .f32, fill: 0x00)
    b.addTensor("blk.0.ffn_up.weight", [64, 3], type: .q4_1, fill: 0x5A)
    return b
}

/// Parses `bytes` from a temporary file; returns the file or the GGUFError.
private func parse(_ bytes: [UInt8], at path: String? = nil) -> Result<GGUFFile, GGUFError> {
    let file = path ?? temporaryPath()
    writeBytes(bytes, to: file)
    defer { if path == nil { unlink(file) } }
    do { return .success(try GGUFFile(path: file)) } catch { return .failure(error) }
}

private func expectFailure(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation,
                           _ check: (GGUFError) -> Bool) -> String {
    switch parse(bytes) {
    case .success:
        Issue.record("parsed a broken file", sourceLocation: sourceLocation)
        return ""
    case .failure(let error):
        #expect(check(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
        return error.description
    }
}

@Test func ggufValidBuilderFileParses() throws {
    let b = validBuilder()
    let file = try parse(b.build()).get()
    #expect(file.version == 3)
    #expect(file.metadataKeys == b.metadata.map(\.key))
    #expect(file.int("test.u8") == 7 && file.int("test.i8") == -7 && file.int("test.u16") == 700)
    #expect(file.int("test.i16") == -700 && file.int("test.i32") == -70000)
    #expect(file.int("test.u64") == 1 << 40 && file.int("test.i64") == -(1 << 40))
    #expect(file.float("test.f32") == 0.5 && file.float("test.f64") == -0.25)
    #expect(file.bool("test.bool") == true)
    #expect(file.string("test.u8") == nil && file.int("test.f32") == nil && file.float("missing") == nil)
    #expect(file.value("test.nested") == b.metadata[12].value)
    #expect(file.stringArray("tokenizer.ggml.tokens") == ["a", "b", "ab", "<|end|>"])
    #expect(file.intArray("tokenizer.ggml.token_type") == [1, 1, 1, 3])
    #expect(file.intArray("tokenizer.ggml.tokens") == nil)
    #expect(file.tensors.map(\.name) == ["token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight", "blk.0.ffn_up.weight"])
    let q = try #require(file.tensor(named: "blk.0.attn_q.weight"))
    #expect(q.dimensions == [256, 2] && q.type == .q4_K && q.rowLength == 256 && q.rowCount == 2)
    #expect(q.elementCount == 512 && q.byteCount == 288 && q.rowBytes == 144)
    #expect(q.dataOffset % 32 == 0 && q.dataOffset >= file.dataSectionOffset)
    #expect(file.tensor(named: "nope") == nil)
}

@Test func ggufVersion2AndCustomAlignmentParse() throws {
    var b = validBuilder()
    b.version = 2
    b.metadata.append(("general.alignment", .uint32(256)))
    let file = try parse(b.build()).get()
    #expect(file.version == 2 && file.alignment == 256)
    #expect(file.dataSectionOffset % 256 == 0)
    #expect(file.tensors.allSatisfy { $0.dataOffset % 256 == 0 })
}

@Test func ggufRejectsBadMagicAndVersions() {
    var b = validBuilder()
    b.magic = 0x4C4C_5547  // "GULL"
    _ = expectFailure(b.build()) { if case .badMagic(_, 0x4C4C_5547) = $0 { return true } else { return false } }
    for version: UInt32 in [0, 1, 4, 0x0300_0000] {
        var v = validBuilder()
        v.version = version
        let message = expectFailure(v.build()) { if case .unsupportedVersion(_, version) = $0 { return true } else { return false } }
        if version == 0x0300_0000 { #expect(message.contains("big-endian")) }
    }
    _ = expectFailure([]) { if case .truncated = $0 { return true } else { return false } }
    _ = expectFailure(Array("GGUF".utf8)) { if case .truncated = $0 { return true } else { return false } }
}

@Test func ggufRejectsTruncatedHeader() throws {
    let bytes = validBuilder().build()
    // Cut inside the tensor directory, in the name of the second tensor.
    let name = Array("blk.0.attn_q.weight".utf8)
    let at = try #require((0..<bytes.count - name.count).first { Array(bytes[$0..<$0 + name.count]) == name })
    let message = expectFailure(Array(bytes[..<(at + 5)])) {
        if case .truncated(_, let what, _, _, let size) = $0 { return what == "the name of tensor 1" && size == at + 5 }
        return false
    }
    #expect(message.contains("truncated") && message.contains("fetch it again"))
    // Cut inside the metadata: the counts no longer fit in what is left, or a value is cut.
    for cut in [24, 60, 200, 400] {
        let text = expectFailure(Array(bytes[..<cut])) {
            switch $0 {
            case .truncated, .countTooLarge: return true
            default: return false
            }
        }
        #expect(text.contains("truncated") && text.contains("fetch it again"), "cut at \(cut): \(text)")
    }
}

@Test func ggufRejectsTensorDataPastTheEnd() {
    let bytes = validBuilder().build()
    // Cut into the last tensor's data: the header is intact, the data is not.
    let message = expectFailure(Array(bytes.dropLast(10))) {
        if case .truncatedTensor(_, "blk.0.ffn_up.weight", let end, let size) = $0 { return end == UInt64(bytes.count) && size == bytes.count - 10 }
        return false
    }
    #expect(message.contains("tensor 'blk.0.ffn_up.weight' data ends at byte \(bytes.count) but the file has \(bytes.count - 10) bytes"))

    var b = validBuilder()
    b.tensors[0].offsetOverride = 1 << 40
    let far = expectFailure(b.build()) { if case .truncatedTensor(_, "token_embd.weight", _, _) = $0 { return true } else { return false } }
    #expect(far.contains("token_embd.weight"))
    b.tensors[0].offsetOverride = UInt64.max - 31
    _ = expectFailure(b.build()) { if case .truncatedTensor(_, "token_embd.weight", UInt64.max, _) = $0 { return true } else { return false } }
}

@Test func ggufRejectsOverlappingTensors() {
    var b = validBuilder()
    b.tensors[3].offsetOverride = 0  // on top of token_embd.weight
    let message = expectFailure(b.build()) {
        if case .overlappingTensors(_, let first, let second) = $0 {
            return Set([first, second]) == ["token_embd.weight", "blk.0.ffn_up.weight"]
        }
        return false
    }
    #expect(message.contains("token_embd.weight") && message.contains("blk.0.ffn_up.weight") && message.contains("overlap"))
}

@Test func ggufRejectsByteCountInconsistentWithType() {
    var b = validBuilder()
    b.tensors[0].dimensions = [33, 4]  // Q8_0 rows must be multiples of 32
    let message = expectFailure(b.build()) {
        if case .rowNotBlockMultiple(_, "token_embd.weight", 33, .q8_0) = $0 { return true } else { return false }
    }
    #expect(message.contains("token_embd.weight") && message.contains("33") && message.contains("32"))
}

@Test func ggufRejectsUnknownTensorType() {
    var b = validBuilder()
    b.tensors[1].type = 99
    let message = expectFailure(b.build()) { if case .unknownTensorType(_, "blk.0.attn_q.weight", 99) = $0 { return true } else { return false } }
    #expect(message.contains("'blk.0.attn_q.weight'") && message.contains("99"))
    for type in GGMLType.dequantizable { #expect(message.contains(type.description)) }
}

@Test func ggufRejectsBadShapes() {
    for dims: [UInt64] in [[], [32, 1, 1, 1, 1], [1 << 32, 1 << 32], [32, 1 << 62, 1 << 62], [32, UInt64.max], [0, 1 << 40, 1 << 40]] {
        var b = validBuilder()
        b.tensors[0].dimensions = dims
        let message = expectFailure(b.build()) { if case .badTensorShape(_, "token_embd.weight", _) = $0 { return true } else { return false } }
        #expect(message.contains("token_embd.weight"))
    }
}

@Test func ggufAcceptsZeroElementTensors() throws {
    var b = validBuilder()
    b.tensors.append(GGUFBuilder.Tensor(name: "empty", dimensions: [0, 5], type: GGMLType.q4_0.rawValue, data: []))
    let file = try parse(b.build()).get()
    let empty = try #require(file.tensor(named: "empty"))
    #expect(empty.byteCount == 0 && empty.elementCount == 0 && empty.rowCount == 5)
}

@Test func ggufRejectsDuplicatesMisalignmentAndBadMetadata() {
    var b = validBuilder()
    b.tensors[2].name = "token_embd.weight"
    _ = expectFailure(b.build()) { if case .duplicateTensor(_, "token_embd.weight") = $0 { return true } else { return false } }

    b = validBuilder()
    b.metadata.append(("test.u8", .uint8(1)))
    _ = expectFailure(b.build()) { if case .duplicateKey(_, "test.u8") = $0 { return true } else { return false } }

    b = validBuilder()
    b.tensors[1].offsetOverride = 160 + 8
    _ = expectFailure(b.build()) { if case .misalignedTensor(_, "blk.0.attn_q.weight", 168, 32) = $0 { return true } else { return false } }

    b = validBuilder()
    b.metadata.append(("general.alignment", .uint32(48)))
    _ = expectFailure(b.build()) { if case .badMetadata(_, "general.alignment", _) = $0 { return true } else { return false } }

    b = validBuilder()
    b.rawValues["test.u8"] = (13, [0])
    _ = expectFailure(b.build()) { if case .unknownValueType(_, "test.u8", 13) = $0 { return true } else { return false } }

    b = validBuilder()
    b.metadata.append(("deep", .array(.array, [.array(.array, [.array(.int32, [])])])))
    _ = expectFailure(b.build()) { if case .badMetadata(_, "deep", _) = $0 { return true } else { return false } }

    // Counts that the rest of the file could never hold.
    b = validBuilder()
    var bytes = b.build()
    bytes.replaceSubrange(16..<24, with: [0, 0, 0, 0, 0, 0, 0, 0x10])  // kv count 2^60
    _ = expectFailure(bytes) { if case .countTooLarge = $0 { return true } else { return false } }
    b = validBuilder()
    b.rawValues["test.u8"] = (9, [4, 0, 0, 0] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  // u32 array of 2^60
    _ = expectFailure(b.build()) { if case .countTooLarge = $0 { return true } else { return false } }
    b = validBuilder()
    b.rawValues["test.u8"] = (8, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  // string of 2^64-1 bytes
    _ = expectFailure(b.build()) { if case .truncated = $0 { return true } else { return false } }
}

@Test func ggufBoundsMetadataArrayMemory() {
    // A u8 array of 2^24 + 1 elements really present in the file: it fits the file, but would
    // cost 24 bytes per element as GGUFValues, so the element budget rejects it before allocating.
    var b = validBuilder()
    let n = GGUFFile.maxMetadataElements + 1
    var raw: [UInt8] = [0, 0, 0, 0]
    withUnsafeBytes(of: UInt64(n).littleEndian) { raw.append(contentsOf: $0) }
    raw.append(contentsOf: repeatElement(0, count: n))
    b.metadata.insert(("huge", .uint8(0)), at: 0)
    b.rawValues["huge"] = (9, raw)
    let message = expectFailure(b.build()) {
        if case .countTooLarge(_, let what, UInt64(n), GGUFFile.maxMetadataElements) = $0 { return what.contains("'huge'") }
        return false
    }
    #expect(message.contains("16777217"))
}

@Test func ggufUnsupportedTypeIsReportedBeforeDequantizing() throws {
    var b = validBuilder()
    b.addTensor("iq.weight", [256, 1], type: .iq2_XXS)
    let file = try parse(b.build()).get()
    let tensor = try #require(file.tensor(named: "iq.weight"))
    #expect(throws: GGUFError.unsupportedTensorType(path: file.path, tensor: "iq.weight", type: .iq2_XXS)) {
        try file.requireDequantizable(tensor)
    }
    #expect(GGUFError.unsupportedTensorType(path: "p", tensor: "iq.weight", type: .iq2_XXS).description.contains("Q4_K"))
}

/// Exercises a parsed file the way the converter will: every dequantizable tensor, all rows, and the tokenizer.
private func exercise(_ file: GGUFFile) {
    for t in file.tensors {
        #expect(t.dataOffset >= 0 && t.byteCount >= 0 && t.dataOffset + t.byteCount <= file.file.size)
        #expect(t.byteCount == t.rowCount * t.rowBytes && t.elementCount == t.rowCount * t.rowLength)
        guard t.type.isDequantizable, t.elementCount > 0, t.elementCount <= 1 << 16 else { continue }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: t.elementCount)
        defer { out.deallocate() }
        file.dequantizeRows(of: t, firstRow: 0, rowCount: t.rowCount, into: out)
    }
    _ = try? GGUFTokenizerExport.files(from: file)
}

@Test func ggufFuzzMutationsNeverCrash() {
    let base = validBuilder().build()
    var rng = SplitMix64(seed: 0x6767_7566)
    let path = temporaryPath()
    defer { unlink(path) }
    var parsed = 0, failed = 0
    let interesting: [UInt64] = [0, 1, 2, 3, 4, 5, 9, 12, 13, 31, 32, 33, 255, 256, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF,
                                 1 << 32, 1 << 62, UInt64(Int64.max), UInt64.max, UInt64(base.count), UInt64(base.count - 1)]
    for iteration in 0..<4000 {
        var bytes = base
        let mutations = 1 + Int(rng.next() % 4)
        for _ in 0..<mutations {
            switch rng.next() % 8 {
            case 0, 1:  // flip a few bits anywhere, weighted towards the header
                let limit = rng.next() % 2 == 0 ? min(bytes.count, 700) : bytes.count
                guard limit > 0 else { break }
                bytes[Int(rng.next() % UInt64(limit))] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8))
            case 2:  // random byte
                guard !bytes.isEmpty else { break }
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            case 3:  // an interesting u64/u32 at a random offset
                guard bytes.count >= 8 else { break }
                let at = Int(rng.next() % UInt64(min(bytes.count - 8, 700)))
                let v = interesting[Int(rng.next() % UInt64(interesting.count))]
                let width = rng.next() % 2 == 0 ? 8 : 4
                for k in 0..<width { bytes[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
            case 4:  // truncate
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count + 1))))
            case 5:  // delete a range
                guard !bytes.isEmpty else { break }
                let at = Int(rng.next() % UInt64(bytes.count))
                bytes.removeSubrange(at..<min(bytes.count, at + 1 + Int(rng.next() % 16)))
            case 6:  // insert random bytes
                let at = Int(rng.next() % UInt64(bytes.count + 1))
                bytes.insert(contentsOf: (0..<(1 + Int(rng.next() % 16))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
            default:  // duplicate a chunk over another place
                guard bytes.count > 32 else { break }
                let from = Int(rng.next() % UInt64(bytes.count - 16)), to = Int(rng.next() % UInt64(bytes.count - 16))
                let chunk = Array(bytes[from..<from + 16])
                bytes.replaceSubrange(to..<to + 16, with: chunk)
            }
        }
        switch parse(bytes, at: path) {
        case .success(let file):
            parsed += 1
            exercise(file)
        case .failure(let error):
            failed += 1
            #expect(!error.description.isEmpty, "iteration \(iteration)")
        }
    }
    // Both outcomes must occur, or the mutations are not reaching the parser.
    #expect(parsed > 100 && failed > 1000, "parsed \(parsed), failed \(failed)")
}

@Test func ggufFuzzRandomBytesNeverCrash() {
    var rng = SplitMix64(seed: 42)
    let path = temporaryPath()
    defer { unlink(path) }
    for iteration in 0..<1500 {
        let count = Int(rng.next() % 2048)
        var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        if iteration % 2 == 0 && count >= 24 {
            // A valid magic and version with small random counts, so parsing goes past the header.
            let prefix: [UInt8] = [0x47, 0x47, 0x55, 0x46, UInt8(2 + iteration % 4 / 2), 0, 0, 0,
                                   UInt8(rng.next() % 4), 0, 0, 0, 0, 0, 0, 0, UInt8(rng.next() % 6), 0, 0, 0, 0, 0, 0, 0]
            bytes.replaceSubrange(0..<24, with: prefix)
        }
        if case .success(let file) = parse(bytes, at: path) { exercise(file) }
    }
}

@Test func ggufReadsFileWrittenByGGUFPy() throws {
    let dir = fixturesDirectory("gguf")
    let file = try GGUFFile(path: dir.appendingPathComponent("tiny-llama.gguf").path)
    #expect(file.version == 3 && file.alignment == 64 && file.architecture == "llama")
    #expect(file.dataSectionOffset % 64 == 0)
    #expect(file.int("test.u8") == 200 && file.int("test.i8") == -100)
    #expect(file.int("test.u16") == 60000 && file.int("test.i16") == -30000)
    #expect(file.int("test.u32") == 4_000_000_000 && file.int("test.i32") == -2_000_000_000)
    #expect(file.value("test.u64") == .uint64(18_000_000_000_000_000_000) && file.int("test.u64") == nil)
    #expect(file.int("test.i64") == -9_000_000_000_000_000_000)
    #expect(file.value("test.f32") == .float32(0.1) && file.value("test.f64") == .float64(0.1))
    #expect(file.bool("test.bool") == true && file.string("test.string") == "héllo ✓")
    #expect(file.intArray("test.int_array") == [1, -2, 3])
    #expect(file.floatArray("test.float_array") == [0.5, -1.25])
    #expect(file.stringArray("test.string_array") == ["a", "", "ß"])
    #expect(file.boolArray("test.bool_array") == [true, false])
    #expect(file.metadataKeys.first == "general.architecture" && file.metadataKeys.count == file.metadata.count)
    let expected: [(String, [Int], GGMLType)] = [
        ("norm.weight", [64], .f32), ("f16.weight", [64, 4], .f16), ("q8.weight", [64, 4], .q8_0),
        ("q41.weight", [64, 2, 2], .q4_1), ("q4k.weight", [256, 3], .q4_K), ("q6k.weight", [256, 1, 2], .q6_K),
    ]
    #expect(file.tensors.map(\.name) == expected.map(\.0))
    for (name, dims, type) in expected {
        let t = try #require(file.tensor(named: name))
        #expect(t.dimensions == dims && t.type == type, "\(name): \(t.dimensions) \(t.type)")
        #expect(t.dataOffset % 64 == 0)
    }
}
