// Terminal output of `quantize`: the progress bar and the closing summary.
import Dispatch
import Foundation
import QLoRACLI
import QLoRAConvert
import QLoRAIO

/// A one-line progress bar on a terminal (stderr), or a plain line every 10% otherwise.
final class ProgressBar {
    private let line = StatusLine()
    private let start = DispatchTime.now()
    private var lastTenth = -1

    func update(_ progress: ConvertProgress) {
        let fraction = Double(progress.elementsDone) / Double(max(1, progress.elementsTotal))
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let eta = fraction > 0.01 ? elapsed / fraction - elapsed : 0
        let label = "[\(progress.tensorIndex + 1)/\(progress.tensorCount)] \(progress.tensor)"
        if line.isTerminal {
            let width = 30, filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            line.draw(String(format: "[%@] %5.1f%% %@ ETA %@  %@", bar, fraction * 100, formatSeconds(elapsed), formatSeconds(eta), label),
                      force: progress.elementsDone == progress.elementsTotal)
        } else {
            let tenth = Int(fraction * 10)
            guard tenth > lastTenth else { return }
            lastTenth = tenth
            FileHandle.standardError.write(Data(String(format: "%3d%% after %@, ETA %@: %@\n", tenth * 10, formatSeconds(elapsed), formatSeconds(eta), label).utf8))
        }
    }

    func finish() { line.finish() }
}

extension ConversionSummary {
    /// The closing summary: what was converted, sizes, bits per parameter, errors, time.
    func report(source: String, output: String) -> String {
        var lines = ["Converted \(source)", "       -> \(output)"]
        lines.append("tensors: \(quantizedTensors) quantized to NF4 (double-quant), \(keptTensors) kept in \(outputEncoding.rawValue); \(shards) shard(s)")
        let bytesInText = bytesIn > 0 ? formatBytes(bytesIn) : "(generated)"
        lines.append("bytes:   in \(bytesInText), out \(formatBytes(bytesOut)) on disk")
        lines.append(String(format: "params:  %.3f B total, %.3f B quantized; %.3f bits/param quantized, %.3f bits/param overall",
                            Double(parameters) / 1e9, Double(quantizedParameters) / 1e9, quantizedBitsPerParameter, bitsPerParameter))
        lines.append("quantization error |w - dequant(w)| by projection (in \(outputEncoding.rawValue), as a loader sees it):")
        for kind in errors.keys.sorted() {
            let stats = errors[kind]!
            let name = kind.padding(toLength: max(10, kind.count), withPad: " ", startingAt: 0)
            lines.append("  \(name)" + String(format: " %4d tensors  mean %.3e  max %.3e", stats.tensors, stats.meanAbsError, Double(stats.maxAbsError)))
        }
        let rate = Double(parameters) / max(seconds, 1e-9) / 1e6
        lines.append(String(format: "time:    %@ (%.1f M params/s)", formatSeconds(seconds), rate))
        return lines.joined(separator: "\n")
    }
}
