// Ctrl-C, SIGTERM and SIGHUP for the commands: each signal is taken on a dispatch queue instead of
// ending the process, and handed to the command's handler.
import Dispatch
import Foundation

public final class SignalHandler: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []

    /// Takes `signals` (their default action is turned off) and calls `handler` with each one as
    /// it arrives, on a background queue.
    public init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            sources.append(source)
        }
    }

    /// Stops handling (the signals stay ignored).
    public func cancel() {
        for source in sources { source.cancel() }
    }
}

/// The exit statuses every command uses.
public enum ExitStatus {
    /// A runtime error; the message says what to do.
    public static let failure: Int32 = 1
    /// A run that completed but whose peak RSS went over its --mem-budget.
    public static let budgetExceeded: Int32 = 3
    /// Stopped by `signal` (130 for Ctrl-C, 143 for SIGTERM), as shells report it.
    public static func interrupted(by signal: Int32) -> Int32 { 128 + signal }
}

/// Prints "<command>: error: <error>" to stderr (runtime errors: no usage text).
public func printError(command: String, _ error: Error) {
    FileHandle.standardError.write(Data("\(command): error: \(error)\n".utf8))
}
