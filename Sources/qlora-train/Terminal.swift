// How `qlora-train` shows a run: the plan and summaries on stdout; the progress bar (loss, tokens/s,
// RSS against the budget, ETA) on a terminal's stderr, or one plain line per step otherwise; and
// Ctrl-C, which asks the trainer to save and stop (a second Ctrl-C quits at once).
import Dispatch
import Foundation
import QLoRACLI
import QLoRAIO
import QLoRATrain

final class TrainTerminal {
    private let budget: Int
    private let line = StatusLine()
    private var isTerminal: Bool { line.isTerminal }
    private var lastEval: Double?

    init(budget: Int) { self.budget = budget }

    func show(_ event: TrainEvent) {
        switch event {
        case .quantizing(let source, let output, nil):
            say("Quantizing \(source) into \(output) (once; later runs reuse it)")
        case .quantizing(_, _, let progress?):
            let fraction = Double(progress.elementsDone) / Double(max(1, progress.elementsTotal))
            line.draw(String(format: "quantizing %5.1f%%  [%d/%d] %@", fraction * 100, progress.tensorIndex + 1, progress.tensorCount, progress.tensor))
        case .dataLoaded(let train, let valid, let validPath):
            say("Data: \(train.description)")
            if let valid { say("Validation (\(validPath)): \(valid.description)") }
        case .plan(let plan):
            say("Memory plan:\n" + plan.table())
        case .resumed(let step, let checkpoint):
            say("Resumed from \(checkpoint) at step \(step)")
        case .notice(let text):
            say("Note: \(text)")
        case .progress(let p):
            // At most a few redraws a second: layer passes of a small model come by the hundred.
            line.draw("step \(p.step): \(p.phase.rawValue) \(p.done)/\(p.total)", interval: 0.2)
        case .sample(let phase, let prompt, let answer):
            say("[\(phase.rawValue) training] \(prompt)\n  -> \(answer.trimmingCharacters(in: .whitespacesAndNewlines))")
        case .step(let m):
            if let eval = m.evalLoss { lastEval = eval }
            let eta = Double(m.totalSteps - m.step) * m.seconds
            let evalText = lastEval.map { String(format: " eval %.4f", $0) } ?? ""
            let text = String(format: "step %d/%d loss %.4f%@ lr %.2e | %.0f tok/s | RSS %@ / %@ | ETA %@", m.step, m.totalSteps, m.loss, evalText,
                              m.learningRate, m.tokensPerSecond, formatBytes(m.rssBytes), formatBytes(budget), formatSeconds(eta))
            if isTerminal {
                let width = 20, filled = width * m.step / max(1, m.totalSteps)
                line.draw("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] " + text, force: true)
            } else {
                FileHandle.standardError.write(Data((text + "\n").utf8))
            }
        case .evaluation(let step, let loss):
            lastEval = loss
            if step == 0 { say(String(format: "Eval loss before training: %.4f", loss)) }
        case .saved(let step, let path):
            if !isTerminal { say("Saved checkpoint of step \(step): \(path)") }
        case .governor(let action):
            say("Governor: \(action)")
        case .finished(let s):
            finishLine()
            var lines = [s.interrupted
                ? (s.lastCheckpoint.map { "Stopped early; the last checkpoint is \($0); resume with --resume \(s.adapterDirectory)" }
                    ?? "Stopped before the first step was complete; nothing was saved")
                : "Done: adapter in \(s.adapterDirectory)"]
            if let first = s.firstLoss, let last = s.lastLoss { lines.append(String(format: "train loss %.4f -> %.4f over %d steps", first, last, s.stepsRun)) }
            if let first = s.firstEvalLoss, let last = s.lastEvalLoss { lines.append(String(format: "eval loss %.4f -> %.4f", first, last)) }
            lines.append("peak RSS \(formatBytes(s.peakRSSBytes)) of the \(formatBytes(s.budget)) budget; \(s.tokens) target tokens in \(formatSeconds(s.seconds))")
            print(lines.joined(separator: "\n"))
        }
    }

    /// Ends the progress bar's line so the next output starts on its own.
    func finishLine() { line.finish() }

    private func say(_ text: String) {
        finishLine()
        print(text)
        fflush(nil)  // all streams: stdout may be a pipe
    }

}

/// Set by the first Ctrl-C (or SIGTERM); the trainer then saves the last complete step and returns.
/// A second signal quits at once.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var received: Int32?
    private var handler: SignalHandler?

    /// The first signal received, if any.
    var signal: Int32? { lock.withLock { received } }

    init() {
        handler = SignalHandler([SIGINT, SIGTERM]) { [self] number in
            let again = lock.withLock { () -> Bool in
                defer { received = received ?? number }
                return received != nil
            }
            if again { exit(ExitStatus.interrupted(by: number)) }
            FileHandle.standardError.write(Data("\nqlora-train: stopping; the step under way is dropped and the last complete one saved (Ctrl-C again to quit now)\n".utf8))
        }
    }
}
