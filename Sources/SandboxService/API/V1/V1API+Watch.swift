import Synchronization

/// `GET /v1/watch?path=P&recursive=true`: the changes under a directory as Server-Sent Events, the HTTP twin of gRPC
/// `watcher.v1.FileWatcherService/WatchDir` over the same core watch.
extension V1API {
    func registerWatch(in router: inout Router) {
        router.add("GET", "/v1/watch") { request, _ in watch(request) }
    }

    /// The watch starts before the answer's head is sent: a refusal is an ordinary v1 error (403, 404, 400, 429),
    /// and once the client has the head, every change from then on is reported. A client that leaves cancels the
    /// watch (its inotify instance is closed at once).
    func watch(_ request: HTTPRequest) -> Reply {
        let watch: DirectoryWatch
        do throws(APIError) {
            let recursive: Bool
            switch request.query["recursive"] {
            case nil, ""?, "false"?, "0"?: recursive = false
            case "true"?, "1"?: recursive = true
            case let other?: throw Self.invalid("recursive \"\(other)\" must be true or false")
            }
            // Required, so that a bare `GET /v1/watch` is an error rather than a stream that never ends.
            guard let path = request.query["path"], !path.isEmpty else {
                throw Self.invalid("the query parameter path is required (\"/\" names the root)")
            }
            do {
                watch = try sandbox.watch(path, recursive: recursive)
            } catch {
                throw V1Error.answer(error)
            }
        } catch {
            return .failure(error)
        }
        let stream = EventStream(
            holdsShutdown: false, highWater: sandbox.streamBufferBytes, source: WatchEventSource(watch: watch))
        // Weak: the watch keeps its handler until it ends, and the stream lives as long as its response.
        watch.onReady { [weak stream] in stream?.wake() }
        stream.onClientGone { watch.cancel() }
        return .response(.eventStream(stream))
    }
}

/// A watch's events as SSE, encoded as libmicrohttpd asks for bytes: `event:` the kind, `data:` JSON
/// `{"path", "old_path"}` (for `error`, `{"message"}`). Nothing is queued here: the watch's own queue is the only
/// one, so a client that does not read makes the watch overflow and end.
final class WatchEventSource: EventSource {
    private struct State {
        var frame = PendingBytes()
        var ended = false
    }

    private let watch: DirectoryWatch
    private let state = Mutex(State())

    init(watch: DirectoryWatch) {
        self.watch = watch
    }

    func fill(_ destination: UnsafeMutableRawBufferPointer) -> (result: EventSourceResult, midFrame: Bool) {
        state.withLock { state in
            fillFrames(
                destination, state: &state, pending: \.frame, ended: \.ended, midFrame: { !$0.frame.isSent }
            ) { state, _ in
                guard !state.ended else { return .stop }
                switch watch.poll() {
                case .event(let event): state.frame.start(Self.frame(event))
                case .end: state.ended = true
                case .waiting: return .waiting
                }
                return .more
            }
        }
    }

    static func frame(_ event: WatchEvent) -> [UInt8] {
        let data: JSONValue =
            event.kind == .error
            ? ["message": .string(event.message)]
            : ["path": .string(event.path), "old_path": .string(event.oldPath)]
        return Array("event: \(event.kind.rawValue)\ndata: ".utf8) + data.encoded() + [0x0A, 0x0A]
    }
}
