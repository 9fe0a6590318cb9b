// The metrics file: one JSON object per optimizer step (`--metrics file.jsonl`).
import Foundation
import QLoRAIO

final class MetricsLog {
    private let handle: FileHandle?
    private let path: String
    private let lock: LockFile?

    /// Opens `path` for appending (creating its directory); a resumed run first drops the lines of
    /// steps after its checkpoint (written by the interrupted run), so the file reads as one run.
    /// Nil path: no file.
    init(path: String?, truncateAfter step: Int) throws(TrainError) {
        self.path = path ?? ""
        guard let path else {
            handle = nil
            lock = nil
            return
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch { throw .output(.cannotCreateDirectory(path: directory, errno: errno)) }
        // Two runs appending to one file would interleave, and this run's rewrite below would cut
        // the other's lines: a run holds the lock beside its metrics file while it writes it.
        do { lock = try LockFile(besideFile: path) } catch { throw .locked(what: "--metrics \(path)", error) }
        var kept = ""
        if step > 0, let data = FileManager.default.contents(atPath: path) {
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let lineStep = object["step"] as? Int, lineStep <= step else { continue }
                kept += line + "\n"
            }
        }
        do { try AtomicOutput.replaceFile(path, Array(kept.utf8)) } catch { throw .output(error) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw .output(.cannotWrite(path: path, errno: errno)) }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    deinit { try? handle?.close() }

    func append(_ m: StepMetrics) throws(TrainError) {
        guard let handle else { return }
        let object = m.jsonObject
        // One line per step: the values are numbers, so each is its own compact encoding.
        let line = "{" + object.keys.sorted().map { "\(jsonString($0)): \(PythonJSON.encode(object[$0]!))" }.joined(separator: ", ") + "}\n"
        do { try handle.write(contentsOf: Data(line.utf8)) } catch { throw .output(.cannotWrite(path: path, errno: errno)) }
    }
}

extension StepMetrics {
    /// The metrics line's fields (also kept in a checkpoint whose step's evaluation is pending).
    var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "step": step, "loss": loss, "lr": learningRate, "grad_norm": gradNorm, "tokens": tokens,
            "tokens_per_s": tokensPerSecond, "rss_bytes": rssBytes, "peak_rss_bytes": peakRSSBytes, "seconds": seconds,
        ]
        if let evalLoss { object["eval_loss"] = evalLoss }
        return object
    }

    /// Reads `jsonObject` back; nil when a field is missing.
    init?(jsonObject object: [String: Any], totalSteps: Int) {
        func number(_ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }
        guard let step = object["step"] as? Int, let loss = number("loss"), let rate = number("lr"), let norm = number("grad_norm"),
              let tokens = object["tokens"] as? Int, let speed = number("tokens_per_s"), let rss = object["rss_bytes"] as? Int,
              let peak = object["peak_rss_bytes"] as? Int, let seconds = number("seconds") else { return nil }
        self.init(step: step, totalSteps: totalSteps, loss: loss, learningRate: rate, gradNorm: norm, tokens: tokens, tokensPerSecond: speed,
                  rssBytes: rss, peakRSSBytes: peak, seconds: seconds, evalLoss: number("eval_loss"))
    }
}
