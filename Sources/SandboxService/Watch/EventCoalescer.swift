/// The events of one window (`--watch-debounce`), merged: bursts of the same change to one path become one event.
///
/// Since the last `create`, `remove` or `rename` of a path (the events that change what the path names), a path
/// gets at most one `create`, one `write` and one `chmod` per window, each where it first happened, and a path created
/// in the window no `chmod` (its attributes are new anyway). So a file created and then written many times is one
/// `create` followed by one `write`; a file rewritten in a loop is one `write` per window. Events that change what a path names are never merged or dropped, so the order in which
/// things appeared and disappeared is kept (a file removed and created again is `remove`, then `create`).
struct EventCoalescer: Sendable {
    private(set) var events: [WatchEvent] = []
    /// The cost of `events` (`WatchEvent.cost`), which the watch's queue bound counts.
    private(set) var cost = 0
    /// The merging kinds each path already has in this window since what it names last changed.
    private var seen: [String: Set<WatchEvent.Kind>] = [:]

    var isEmpty: Bool { events.isEmpty }

    /// Adds an event; returns the cost it added (0 when it was merged into an earlier one).
    @discardableResult
    mutating func add(_ event: WatchEvent) -> Int {
        switch event.kind {
        case .create, .write, .chmod:
            guard seen[event.path, default: []].insert(event.kind).inserted else { return 0 }
            if event.kind == .create {
                // A new file: what was seen of the path before is about an earlier one, and a change of its
                // attributes in the same window (`touch` sets its times) is part of its creation.
                seen[event.path] = [.create, .chmod]
            }
        case .remove:
            seen[event.path] = nil
        case .rename:
            seen[event.path] = nil
            seen[event.oldPath] = nil
        case .error:
            break
        }
        events.append(event)
        cost += event.cost
        return event.cost
    }

    /// The window's events, in order; the coalescer is empty afterwards.
    mutating func take() -> [WatchEvent] {
        defer {
            events = []
            cost = 0
            seen = [:]
        }
        return events
    }
}
