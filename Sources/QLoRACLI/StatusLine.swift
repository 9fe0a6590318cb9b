// One line of status redrawn in place on a terminal's stderr (a progress bar), at most ten times a
// second; the commands print plain lines instead when stderr is not a terminal.
import Dispatch
import Foundation

public final class StatusLine {
    /// Whether stderr is a terminal (else nothing is drawn: callers print their own plain lines).
    public let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastDraw: UInt64 = 0
    private var shown = false

    public init() {}

    /// Draws `text` over the previous line, unless one was drawn less than `interval` seconds ago
    /// (`force` draws anyway: the last state of a bar).
    public func draw(_ text: String, force: Bool = false, interval: Double = 0.1) {
        guard isTerminal else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard force || !shown || Double(now - lastDraw) / 1e9 >= interval else { return }
        lastDraw = now
        FileHandle.standardError.write(Data(("\r" + text.padding(toLength: max(text.count, 118), withPad: " ", startingAt: 0)).utf8))
        shown = true
    }

    /// Ends the drawn line so the next output starts on its own.
    public func finish() {
        if shown { FileHandle.standardError.write(Data("\n".utf8)) }
        shown = false
    }
}
