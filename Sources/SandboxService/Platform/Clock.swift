import Glibc

/// The monotonic clock (`CLOCK_MONOTONIC`) in nanoseconds, for deadlines and durations: it never jumps with the
/// wall clock.
package func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
