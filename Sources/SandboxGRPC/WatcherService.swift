import GRPCCore
import SandboxService

/// `watcher.v1.FileWatcherService` (agent-sandbox's Go daemon's contract) as an adapter over the core's directory
/// watch: the request becomes `Sandbox.watch`, its events messages, its refusals statuses (`RPCError(_:)`).
struct WatcherService: Watcher_V1_FileWatcherService.ServiceProtocol {
    let sandbox: Sandbox

    /// The watch starts before the response does: an error is the call's status with nothing sent, and once the
    /// client has the response's headers, every change from then on is reported.
    func watchDir(
        request: ServerRequest<Watcher_V1_WatchDirRequest>, context: ServerContext
    ) async throws -> StreamingServerResponse<Watcher_V1_FileEvent> {
        let watch: DirectoryWatch
        let (path, recursive) = (request.message.path, request.message.recursive)
        do {
            // Starting walks the tree when recursive, in time proportional to it: off the listener's event loop,
            // which serves every other call meanwhile.
            watch = try await withTaskExecutorPreference(globalConcurrentExecutor) { () throws(SandboxError) in
                try sandbox.watch(path, recursive: recursive)
            }
        } catch {
            throw RPCError(error)
        }
        return StreamingServerResponse { writer in
            defer { watch.cancel() }
            try await withRPCCancellationHandler {
                while let event = await watch.next() {
                    try await writer.write(Self.message(event))
                }
            } onCancelRPC: {
                // The client left or the deadline passed: the waiting `next()` returns nil and the instance closes.
                watch.cancel()
            }
            return [:]
        }
    }

    static func message(_ event: WatchEvent) -> Watcher_V1_FileEvent {
        .with {
            $0.type =
                switch event.kind {
                case .create: .create
                case .write: .write
                case .remove: .remove
                case .rename: .rename
                case .chmod: .chmod
                case .error: .error
                }
            $0.path = event.path
            $0.oldPath = event.oldPath
            $0.error = event.message
        }
    }
}
