import Dispatch
import Logging
import Synchronization

/// Writes a warning at most once per interval for each kind of message, with the number of messages of that kind
/// left out since the last one written. A flood of one event (a client opening connection after connection past the
/// limit, libmicrohttpd failing to accept) then costs a line per interval instead of a line per event.
public final class LogThrottle: Sendable {
    private struct Kind {
        var lastWritten: UInt64
        var suppressed: Int
    }

    private let logger: Logger
    private let interval: UInt64
    private let kinds = Mutex<[String: Kind]>([:])

    public init(logger: Logger, seconds: Double = 1) {
        self.logger = logger
        interval = UInt64(seconds * 1e9)
    }

    /// Writes `message` unless a message of the same `kind` was written less than an interval ago.
    public func warning(_ kind: String, _ message: @autoclosure () -> String) {
        let now = DispatchTime.now().uptimeNanoseconds
        let suppressed = kinds.withLock { kinds -> Int? in
            if var known = kinds[kind], now &- known.lastWritten < interval {
                known.suppressed += 1
                kinds[kind] = known
                return nil
            }
            let suppressed = kinds[kind]?.suppressed ?? 0
            kinds[kind] = Kind(lastWritten: now, suppressed: 0)
            return suppressed
        }
        guard let suppressed else { return }
        let seconds = Double(interval) / 1e9
        let note = suppressed > 0 ? " (\(suppressed) more like it in the last \(seconds.formatted()) s not logged)" : ""
        logger.warning("\(message())\(note)")
    }
}

extension Double {
    /// `1` for 1.0, `0.5` for 0.5: a number of seconds as a person writes it.
    fileprivate func formatted() -> String {
        self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self)
    }
}
