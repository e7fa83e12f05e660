import Dispatch
import Glibc
import Logging
import Synchronization

/// The open connections and what their requests wait on, policed: the connection limit, and every `tick()` the cuts
/// libmicrohttpd does not make itself (request heads that never end, clients that ended their side, files that
/// shrank under a download, clients gone from a parked answer) and keep-alive comments on silent event streams.
///
/// It sees connections by their sockets only, which it shuts down (never closes: libmicrohttpd owns the descriptors);
/// libmicrohttpd then sees the socket fail, closes it and ends the request with an error.
final class Connections: Sendable {
    /// An open connection as the tick sees it.
    private struct Connection {
        let socket: Int32
        /// Since when it waits for a request head; nil while a request is being served.
        var waitingSince: DispatchTime?
        /// A request head arrived and its body is still coming.
        var receivingBody = false
        /// When the tick first found the client's end of stream with nothing left to read, in the current phase.
        var endSeen: DispatchTime?
    }

    /// What one request has the tick watch, on its client's socket.
    private struct Watched {
        let socket: Int32
        /// A later answer being waited for.
        var pending: PendingResponse?
        /// An event stream being sent.
        var stream: EventStream?
        /// A file being sent: its descriptor and the offset where the response ends.
        var download: (file: Int32, end: UInt64)?
    }

    private struct State {
        /// Open connections by connection pointer.
        var connections: [UInt: Connection] = [:]
        /// Requests by their identity, while they wait or send.
        var requests: [ObjectIdentifier: Watched] = [:]
        var stopping = false
    }

    let limit: Int
    /// Seconds a connection may take to send a request head.
    let idleTimeout: Int
    /// Seconds of silence on an event stream before a keep-alive comment is sent.
    let keepAliveInterval: Double
    private let logger: Logger
    /// Writes the refusal warning: a client opening connection after connection past the limit would otherwise
    /// write a line for each.
    private let throttle: LogThrottle
    private let state = Mutex(State())

    init(limit: Int, idleTimeout: Int, keepAliveInterval: Double, logger: Logger, throttle: LogThrottle) {
        self.limit = limit
        self.idleTimeout = idleTimeout
        self.keepAliveInterval = keepAliveInterval
        self.logger = logger
        self.throttle = throttle
    }

    // MARK: accept policy, connection phases

    /// libmicrohttpd's accept policy: refuses a new connection (libmicrohttpd closes it at once) when `limit`
    /// (`--max-connections`, which the descriptor budget derives) connections are open; the warning is throttled.
    func admitsConnection() -> Bool {
        guard state.withLock({ $0.connections.count }) >= limit else { return true }
        throttle.warning("connection limit", "refused a connection: \(limit) connections are open")
        return false
    }

    func opened(_ connection: OpaquePointer, socket: Int32) {
        state.withLock { $0.connections[Self.key(connection)] = Connection(socket: socket, waitingSince: .now()) }
    }

    func closed(_ connection: OpaquePointer) {
        state.withLock { _ = $0.connections.removeValue(forKey: Self.key(connection)) }
    }

    /// A request head arrived: its body, if any, comes next.
    func headReceived(on connection: OpaquePointer) {
        state.withLock { state in
            Self.update(connection, in: &state) {
                $0.waitingSince = nil
                $0.receivingBody = true
                $0.endSeen = nil
            }
        }
    }

    /// The request's body is complete (or will not be read): it is being answered.
    func bodyReceived(on connection: OpaquePointer) {
        state.withLock { state in
            Self.update(connection, in: &state) {
                $0.receivingBody = false
                $0.endSeen = nil
            }
        }
    }

    /// A request ended: nothing of it is watched any more, and its connection (if still open) waits for the next.
    func requestEnded(_ request: ObjectIdentifier, on connection: OpaquePointer?) {
        let now = DispatchTime.now()
        state.withLock { state in
            if !state.requests.isEmpty { state.requests.removeValue(forKey: request) }
            guard let connection else { return }
            Self.update(connection, in: &state) {
                $0.waitingSince = now
                $0.receivingBody = false
                $0.endSeen = nil
            }
        }
    }

    /// Changes an open connection's entry in place, with one lookup (these run for every request).
    private static func update(_ connection: OpaquePointer, in state: inout State, _ change: (inout Connection) -> Void)
    {
        guard let index = state.connections.index(forKey: key(connection)) else { return }
        change(&state.connections.values[index])
    }

    private static func key(_ connection: OpaquePointer) -> UInt {
        UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(connection)))
    }

    // MARK: what requests wait on

    /// Watches a later answer until its request ends; false once the server is stopping (it will not wait).
    func watch(_ pending: PendingResponse, of request: ObjectIdentifier, socket: Int32) -> Bool {
        state.withLock { state in
            guard !state.stopping else { return false }
            state.requests[request, default: Watched(socket: socket)].pending = pending
            return true
        }
    }

    func watch(_ stream: EventStream, of request: ObjectIdentifier, socket: Int32) {
        state.withLock { $0.requests[request, default: Watched(socket: socket)].stream = stream }
    }

    /// A file response being sent from `file` (owned by libmicrohttpd's response, which closes it only after the
    /// request's completion callback has ended the watch) up to offset `end`.
    func watchDownload(file: Int32, end: UInt64, of request: ObjectIdentifier, socket: Int32) {
        state.withLock { $0.requests[request, default: Watched(socket: socket)].download = (file, end) }
    }

    /// Requests still being answered that a graceful shutdown waits for: waiting for a command, or streaming its
    /// events (not those following background processes).
    var activeRequests: Int {
        state.withLock { state in
            state.requests.values.reduce(0) { count, watched in
                count + (watched.pending?.holdsShutdown == true ? 1 : 0)
                    + (watched.stream?.holdsShutdown == true ? 1 : 0)
            }
        }
    }

    /// From now on no later answer is waited for; returns the streams and waits to end before libmicrohttpd stops.
    func stop() -> (streams: [EventStream], pendings: [PendingResponse]) {
        state.withLock { state in
            state.stopping = true
            return (state.requests.values.compactMap(\.stream), state.requests.values.compactMap(\.pending))
        }
    }

    // MARK: the tick

    /// Called every `HTTPServer.tickInterval`. A suspended connection is not polled by libmicrohttpd, so without this
    /// a dead client would go unnoticed until the command ends; and libmicrohttpd's idle timeout restarts with every
    /// byte, so a client sending a header byte at a time (slowloris) would hold its connection forever.
    func tick(now: DispatchTime = .now()) {
        cutSlowConnections(now: now)
        cutEndedConnections(now: now)
        cutShrunkDownloads()
        let (gone, silent) = state.withLock { state in
            // Under the lock: entries leave in the completion callback, before libmicrohttpd closes the socket.
            let gone = state.requests.values.filter { $0.pending != nil || $0.stream != nil }.filter {
                Self.peerEnded($0.socket)
            }
            let silent = state.requests.values.compactMap(\.stream).filter {
                $0.idleTime(now: now) >= keepAliveInterval
            }
            return (gone, silent)
        }
        for watched in gone {
            watched.stream?.clientGone()
            watched.pending?.clientGone()
        }
        silent.forEach { $0.sendComment("keep-alive") }
    }

    /// Shuts down connections that have not sent a complete request head within the idle timeout.
    private func cutSlowConnections(now: DispatchTime) {
        let limit = UInt64(idleTimeout) * 1_000_000_000
        let cut = state.withLock { state -> Int in
            var cut = 0
            for (key, connection) in state.connections {
                // `now` was read before the lock: a request may have started waiting after it.
                guard let since = connection.waitingSince, now > since,
                    now.uptimeNanoseconds - since.uptimeNanoseconds > limit
                else { continue }
                shutdown(connection.socket, Int32(SHUT_RDWR))
                state.connections[key]?.waitingSince = nil
                cut += 1
            }
            return cut
        }
        if cut > 0 {
            logger.info("closed \(cut) connection(s) that sent no complete request within \(idleTimeout) s")
        }
    }

    /// Shuts down connections whose client ended its side while sandboxd waits for it to send: in the middle of a
    /// request body, or between requests.
    ///
    /// libmicrohttpd 0.9.75 misses such an end of stream whenever it arrives with the last bytes or before
    /// libmicrohttpd read them: its epoll loop is edge-triggered and `recv_param_adapter` clears the connection's
    /// read-ready flag after any short read, taking it for "drained", so the `recv` that would return 0 is never
    /// made; no new edge comes (the FIN was already there), and the connection sits in CLOSE-WAIT until the idle
    /// timeout with its upload's temporary file open. A connection found ended at two ticks in a row, with nothing
    /// left to read and in the same phase (a request that was complete when the client ended its side has been
    /// dispatched by then), is shut down; libmicrohttpd then sees the socket fail, closes it and reports the
    /// request as ended with an error, which removes what the request had created.
    private func cutEndedConnections(now: DispatchTime) {
        state.withLock { state in
            for (key, connection) in state.connections {
                guard connection.waitingSince != nil || connection.receivingBody,
                    Self.peerEnded(connection.socket, unreadCounts: false)
                else {
                    if connection.endSeen != nil { state.connections[key]?.endSeen = nil }
                    continue
                }
                guard let seen = connection.endSeen else {
                    state.connections[key]?.endSeen = now
                    continue
                }
                guard now > seen else { continue }
                shutdown(connection.socket, Int32(SHUT_RDWR))
                state.connections[key]?.waitingSince = nil
                state.connections[key]?.receivingBody = false
                state.connections[key]?.endSeen = nil
            }
        }
    }

    /// Shuts down the connections of file responses whose file became shorter than the response: libmicrohttpd
    /// sends files with `sendfile`, which then returns 0 forever, and the client would wait for the missing bytes.
    private func cutShrunkDownloads() {
        state.withLock { state in
            for watched in state.requests.values {
                guard let download = watched.download else { continue }
                var info = stat()
                guard fstat(download.file, &info) == 0, UInt64(max(0, info.st_size)) < download.end else { continue }
                shutdown(watched.socket, Int32(SHUT_RDWR))
            }
        }
    }

    /// `POLLRDHUP`, which Glibc's module does not export (it is defined only under `_GNU_SOURCE`).
    private static let pollReadHangUp: Int16 = 0x2000

    /// True when the client closed, reset or shut down its side of the connection. With `unreadCounts` false, only
    /// once nothing it sent is left to read: libmicrohttpd still reads and handles those bytes itself.
    ///
    /// A suspended request treats an end of stream as the client leaving even with bytes unread (a client that
    /// pipelined a request and then ended its side is gone as far as the waiting answer is concerned).
    private static func peerEnded(_ socket: Int32, unreadCounts: Bool = true) -> Bool {
        guard socket >= 0 else { return false }
        var entry = pollfd(fd: socket, events: Self.pollReadHangUp, revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        if Int32(entry.revents) & (POLLHUP | POLLERR) != 0 { return true }
        guard entry.revents & Self.pollReadHangUp != 0 else { return false }
        if unreadCounts { return true }
        var unread: Int32 = 0
        return ioctl(socket, UInt(FIONREAD), &unread) == 0 && unread == 0
    }
}
