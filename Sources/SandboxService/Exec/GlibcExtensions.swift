import Glibc

// glibc declares these only under _GNU_SOURCE (or as C variadics, which Swift cannot call), and Swift's Glibc module
// defines neither. Each is looked up once by name; a missing one means a glibc older than Debian bookworm's.

/// `grantpt`, `unlockpt`, `ptsname_r`: XSI pseudo-terminal calls Swift's Glibc module leaves out.
let grantpt = glibcFunction("grantpt", as: (@convention(c) (Int32) -> Int32).self)
let unlockpt = glibcFunction("unlockpt", as: (@convention(c) (Int32) -> Int32).self)
let ptsname_r = glibcFunction(
    "ptsname_r", as: (@convention(c) (Int32, UnsafeMutablePointer<CChar>, Int) -> Int32).self)

/// `pthread_setname_np`: names threads, so `top -H` and crash reports show what each one is.
let setThreadName = glibcFunction(
    "pthread_setname_np", as: (@convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32).self)

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphans of sandboxd's commands are re-parented to sandboxd, which reaps
/// them, instead of to the container's PID 1 (which may not reap at all). `prctl` is variadic in C; on Linux's
/// ABIs a call with only integer arguments through this fixed signature passes them the same way.
@discardableResult
func becomeChildSubreaper() -> Bool {
    let prctl = glibcFunction("prctl", as: (@convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32).self)
    let PR_SET_CHILD_SUBREAPER: Int32 = 36
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
}

private func glibcFunction<F>(_ name: String, as type: F.Type) -> F {
    guard let symbol = dlsym(nil, name) else { fatalError("glibc lacks \(name); Debian bookworm's glibc 2.36 has it") }
    return unsafeBitCast(symbol, to: type)
}
