/// Which output of a process a chunk came from. A process on a terminal has only `stdout`.
public enum OutputChannel: String, Sendable {
    case stdout
    case stderr
}

/// A process's output as numbered events, the newest kept for replay within a budget of output bytes.
///
/// Ids start at 1 and increase by one per event, so the kept events always have consecutive ids and everything at or
/// below `droppedThrough` is gone. Events keep the bytes as the process wrote them (a base64 client gets exactly
/// those); for text clients each event also knows which bytes of a UTF-8 character split across two reads belong to
/// it, so a character cut by a read boundary is shown whole in the next event instead of as two U+FFFD.
struct OutputLog: Sendable {
    struct Event: Sendable, Equatable {
        let id: UInt64
        let channel: OutputChannel
        /// The raw bytes of one read.
        let bytes: [UInt8]
        /// The start of a character that the channel's previous event held back.
        let carriedIn: [UInt8]
        /// Bytes at the end of `carriedIn + bytes` that begin a character the next event completes.
        let heldBack: Int

        /// The event as text: its complete characters, invalid sequences as U+FFFD.
        var text: String { String(decoding: (carriedIn + bytes).dropLast(heldBack), as: UTF8.self) }
    }

    /// What a client that has seen every event up to some id gets.
    struct Replay: Equatable {
        /// Events it asked for that are no longer kept.
        var missed: ClosedRange<UInt64>?
        var events: [Event]
    }

    /// Output bytes kept at most; the oldest events are dropped beyond it.
    let limit: Int
    private var events: [Event] = []
    /// Index of the oldest kept event in `events`; the slots before it are dropped and compacted now and then.
    private var head = 0
    private(set) var byteCount = 0
    /// The last id handed out.
    private(set) var lastID: UInt64 = 0
    /// Every event with an id up to this one was dropped (0: none).
    private(set) var droppedThrough: UInt64 = 0
    /// Per channel, the start of a character the last event held back.
    private var carry: [OutputChannel: [UInt8]] = [:]

    init(limit: Int) {
        self.limit = max(0, limit)
    }

    /// Kept events, oldest first.
    var kept: ArraySlice<Event> { events[head...] }

    /// Records one read and returns its event, which live subscribers get even if the budget drops it at once.
    mutating func append(_ bytes: [UInt8], from channel: OutputChannel) -> Event {
        let carriedIn = carry[channel] ?? []
        let heldBack = Self.incompleteSuffix(carriedIn + bytes)
        let event = Event(id: nextID(), channel: channel, bytes: bytes, carriedIn: carriedIn, heldBack: heldBack)
        carry[channel] = heldBack == 0 ? nil : Array((carriedIn + bytes).suffix(heldBack))
        events.append(event)
        byteCount += bytes.count
        while byteCount > limit, head < events.count {
            byteCount -= events[head].bytes.count
            droppedThrough = events[head].id
            head += 1
        }
        if head > 64 && head * 2 > events.count {
            events.removeSubrange(0..<head)
            head = 0
        }
        return event
    }

    /// At the end of the output: an event (with no bytes of its own) per channel whose last character never
    /// completed, so text clients see it as U+FFFD rather than not at all.
    mutating func flush() -> [Event] {
        var flushed: [Event] = []
        for channel in [OutputChannel.stdout, .stderr] {
            guard let carried = carry.removeValue(forKey: channel) else { continue }
            let event = Event(id: nextID(), channel: channel, bytes: [], carriedIn: carried, heldBack: 0)
            events.append(event)
            flushed.append(event)
        }
        return flushed
    }

    /// Hands out the next id, for an event that is not output (the exit).
    mutating func nextID() -> UInt64 {
        lastID += 1
        return lastID
    }

    /// The kept event with this id; nil if it was dropped or does not exist (yet).
    func event(_ id: UInt64) -> Event? {
        guard let first = events[head...].first?.id, id >= first, id - first < UInt64(events.count - head) else {
            return nil
        }
        return events[head + Int(id - first)]
    }

    /// The events after `lastSeen` (0: from the start), and which of those are gone.
    func replay(after lastSeen: UInt64) -> Replay {
        let missed = lastSeen < droppedThrough ? (lastSeen + 1)...droppedThrough : nil
        guard let first = events[head...].first?.id, lastSeen < lastID else {
            return Replay(missed: missed, events: [])
        }
        let skip = Int(min(UInt64(events.count - head), lastSeen >= first ? lastSeen - first + 1 : 0))
        return Replay(missed: missed, events: Array(events[(head + skip)...]))
    }

    /// How many bytes at the end of `bytes` are the start of a UTF-8 sequence that is not complete yet: a lead byte
    /// among the last three followed by fewer continuation bytes than it announces.
    static func incompleteSuffix(_ bytes: [UInt8]) -> Int {
        for back in stride(from: 1, through: min(3, bytes.count), by: 1) {
            let byte = bytes[bytes.count - back]
            if byte & 0xC0 == 0x80 { continue }
            let length =
                switch byte {
                case 0xC2...0xDF: 2
                case 0xE0...0xEF: 3
                case 0xF0...0xF4: 4
                default: 1
                }
            return length > back ? back : 0
        }
        return 0
    }
}
