// What every benchmark executable shares: refusing debug builds, command-line options, timing by
// the median of runs, failing with a message, and the environment facts each JSON report carries.
import Foundation
import QLoRAKernels

/// A benchmark's name, for messages ("matmul-bench: ...").
public struct Benchmark: Sendable {
    public let name: String

    /// Exits with status 2 in a debug build, whose timings mean nothing.
    public init(_ name: String) {
        self.name = name
        #if DEBUG
        fail("build with -c release; debug timings mean nothing", status: 2)
        #endif
    }

    public func fail(_ message: String, status: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("\(name): \(message)\n".utf8))
        exit(status)
    }

    public func log(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// The value after `--name` on the command line, or `fallback`.
    public func option(_ name: String, _ fallback: String) -> String {
        let arguments = CommandLine.arguments
        guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return fallback }
        return arguments[index + 1]
    }

    public func intOption(_ name: String, _ fallback: Int) -> Int {
        let text = option(name, String(fallback))
        guard let value = Int(text) else { fail("\(name) needs an integer, got '\(text)'") }
        return value
    }

    public func flag(_ name: String) -> Bool { CommandLine.arguments.contains(name) }

    /// Prints the report (plus the environment fields) as one JSON object on stdout.
    public func report(_ fields: [String: Any]) {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) } ?? "?"
        var all = fields
        all["tool"] = "swift-qlora " + name
        all["commit"] = commandOutput(["git", "rev-parse", "--short", "HEAD"])
        all["cpu"] = cpu
        all["threads"] = ProcessInfoCores.count
        all["blas"] = BLAS.describe()
        let data = try! JSONSerialization.data(withJSONObject: all, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Median wall time in seconds of `runs` calls of `body` after `warmup` untimed calls.
public func medianSeconds(runs: Int, warmup: Int = 1, _ body: () -> Void) -> Double {
    for _ in 0..<warmup { body() }
    var times: [Double] = []
    for _ in 0..<runs {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return median(times)
}

/// The middle value of `values` (the upper one of the two middles for an even count).
public func median(_ values: [Double]) -> Double {
    precondition(!values.isEmpty)
    return values.sorted()[values.count / 2]
}

/// Keeps a result alive so the optimizer cannot drop the work that made it.
@inline(never) public func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

func commandOutput(_ arguments: [String]) -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try? process.run()
    process.waitUntilExit()
    return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
