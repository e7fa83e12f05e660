import CMicroHTTPD

/// A connection pointer that crosses threads. libmicrohttpd allows `MHD_resume_connection` from any thread (the
/// daemon uses an inter-thread channel); `MHD_suspend_connection` is only called from this connection's callbacks.
struct ConnectionHandle: @unchecked Sendable {
    let raw: OpaquePointer

    func suspend() { MHD_suspend_connection(raw) }
    func resume() { MHD_resume_connection(raw) }
}
