// Publishing a finished output: without `replace`, an output that appeared in the meantime (another
// process's) is refused by the rename itself and both stay as they are.
import Foundation
import QLoRAIO
import Testing
import _TestSupport

@Test func publishingWithoutReplaceNeverTakesAnotherOutput() throws {
    let directory = try TemporaryDirectory()
    let output = directory.path + "/out", partial = AtomicOutput.partialDirectory(for: output)
    try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
    try Data("mine".utf8).write(to: URL(fileURLWithPath: partial + "/file"))
    // Another process published first.
    try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
    try Data("theirs".utf8).write(to: URL(fileURLWithPath: output + "/file"))
    #expect(throws: FileError.alreadyExists(path: output)) { try AtomicOutput.publish(partial: partial, output: output, replace: false) }
    #expect(FileManager.default.contents(atPath: output + "/file") == Data("theirs".utf8))
    #expect(FileManager.default.contents(atPath: partial + "/file") == Data("mine".utf8))
    // With nothing in the way it is a plain rename.
    try FileManager.default.removeItem(atPath: output)
    try AtomicOutput.publish(partial: partial, output: output, replace: false)
    #expect(FileManager.default.contents(atPath: output + "/file") == Data("mine".utf8))
    #expect(!FileManager.default.fileExists(atPath: partial))
}
