import Synchronization

/// Request ids: 16 hex digits, a random half per process and a counting half, so ids differ across restarts without
/// a `getrandom` system call per request.
enum RequestID {
    private static let prefix = hex(UInt32.random(in: 0...UInt32.max))
    private static let counter = Atomic<UInt32>(0)

    static func next() -> String {
        prefix + hex(counter.wrappingAdd(1, ordering: .relaxed).newValue)
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
