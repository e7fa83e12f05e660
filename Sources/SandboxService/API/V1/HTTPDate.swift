import Glibc

/// The timestamps of the v1 APIs: HTTP dates for `Last-Modified` and the conditional headers, RFC 3339 for the
/// files' `modified_at` and the processes' `started_at` and `finished_at`. Formatted by hand: `strftime` names days
/// and months by the C locale of the moment.
enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let longDays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]

    /// `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func imfFixdate(_ seconds: Int64) -> String {
        let time = utc(seconds)
        return "\(days[Int(time.tm_wday)]), \(pad(time.tm_mday)) \(months[Int(time.tm_mon)]) "
            + "\(pad(time.tm_year + 1900, 4)) \(pad(time.tm_hour)):\(pad(time.tm_min)):\(pad(time.tm_sec)) GMT"
    }

    /// `1994-11-06T08:49:37Z`, as Go's `time.RFC3339` prints a UTC time.
    static func rfc3339(_ seconds: Int64) -> String {
        let time = utc(seconds)
        return "\(pad(time.tm_year + 1900, 4))-\(pad(time.tm_mon + 1))-\(pad(time.tm_mday))"
            + "T\(pad(time.tm_hour)):\(pad(time.tm_min)):\(pad(time.tm_sec))Z"
    }

    /// Seconds since the epoch of an HTTP date in any of the three forms RFC 9110 §5.6.7 makes recipients
    /// accept: IMF-fixdate, RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
    static func parse(_ text: String) -> Int64? {
        let words = text.split(separator: " ")
        let day: Substring
        let month: Substring
        var year: Substring
        let clock: Substring
        switch words.count {
        case 6 where words[0].hasSuffix(",") && days.contains(String(words[0].dropLast())) && words[5] == "GMT":
            (day, month, year, clock) = (words[1], words[2], words[3], words[4])
        case 4 where words[0].hasSuffix(",") && longDays.contains(String(words[0].dropLast())) && words[3] == "GMT":
            let parts = words[1].split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[2].count == 2 else { return nil }
            (day, month, year, clock) = (parts[0], parts[1], parts[2], words[2])
        case 5 where days.contains(String(words[0])):
            (day, month, year, clock) = (words[2], words[1], words[4], words[3])
        default:
            return nil
        }
        let times = clock.split(separator: ":", omittingEmptySubsequences: false)
        guard let monthIndex = months.firstIndex(of: String(month)), times.count == 3,
            times.allSatisfy({ $0.count == 2 }), day.count <= 2
        else { return nil }
        if year.count == 2, let short = Int32(year) {
            // RFC 850's two-digit year: the most recent year that ends in those digits, as RFC 9110 asks.
            year = Substring(String(short < 70 ? 2000 + short : 1900 + short))
        }
        guard year.count == 4, let fullYear = Int32(year), let mday = Int32(day), let hour = Int32(times[0]),
            let minute = Int32(times[1]), let second = Int32(times[2]), (1...31).contains(mday), hour < 24,
            minute < 60, second < 61
        else { return nil }
        var time = tm()
        time.tm_year = fullYear - 1900
        time.tm_mon = Int32(monthIndex)
        time.tm_mday = mday
        time.tm_hour = hour
        time.tm_min = minute
        time.tm_sec = second
        return Int64(timegm(&time))
    }

    private static func utc(_ seconds: Int64) -> tm {
        var clock = time_t(seconds)
        var time = tm()
        gmtime_r(&clock, &time)
        return time
    }

    private static func pad(_ value: Int32, _ width: Int = 2) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
