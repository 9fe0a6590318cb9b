// LineReader: the lines of a file as `split(separator: "\n")` gives them, across chunk boundaries and
// for lines longer than a chunk, and no crash when the file shrinks while it is read.
import Foundation
import QLoRAIO
import Testing
import _TestSupport

@Test func linesComeOutAsTheFileSplitsThem() throws {
    let directory = try TemporaryDirectory()
    var random = SplitMix64(seed: 5)
    var lines: [String] = ["", "short", "with\rcarriage return", ""]
    for length in [1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 << 19, 17] {
        lines.append(String((0..<length).map { _ in Character(Unicode.Scalar(UInt8(97 + random.next() % 26))) }))
    }
    for trailingNewline in [true, false] {
        let text = lines.joined(separator: "\n") + (trailingNewline ? "\n" : "")
        let path = directory.path + "/lines-\(trailingNewline).txt"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let reader = try LineReader(path: path)
        var read: [String] = []
        while let line = try reader.nextLine() { read.append(String(decoding: line, as: UTF8.self)) }
        #expect(read == lines, "trailing newline \(trailingNewline): \(read.map(\.count)) vs \(lines.map(\.count))")
    }
}

@Test func aFileThatShrinksWhileReadEndsEarlyWithoutACrash() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path + "/shrinks.txt"
    let line = String(repeating: "x", count: 1000)
    try Data(Array(repeating: line, count: 5000).joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
    let reader = try LineReader(path: path)
    #expect(try reader.nextLine()?.count == 1000)
    #expect(truncate(path, 10) == 0)
    var more = 0
    while try reader.nextLine() != nil { more += 1 }
    #expect(more < 5000)
}
