import Dispatch
import GRPCCore
import Logging
import SandboxService
import Synchronization

/// With `--token`, every call must carry `authorization: Bearer <token>` metadata, as every HTTP request but
/// `GET /` must carry the header; otherwise it ends UNAUTHENTICATED before any handler runs.
struct BearerAuthentication: ServerInterceptor {
    let token: String

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let given = request.metadata[stringValues: "authorization"].first { _ in true }
        guard let given, BearerToken.matches(given, expected: token) else {
            return StreamingServerResponse(
                error: RPCError(code: .unauthenticated, message: "missing or wrong 'authorization: Bearer' token"))
        }
        return try await next(request, context)
    }
}

/// One log line per call (method, status, duration), as the HTTP front logs one per request, and the count of
/// calls still running for the graceful shutdown.
final class CallLog: ServerInterceptor {
    private let logger: Logger
    private let running = Atomic<Int>(0)

    init(logger: Logger) {
        self.logger = logger
    }

    var active: Int { running.load(ordering: .relaxed) }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let started = DispatchTime.now()
        let method = context.descriptor.fullyQualifiedMethod
        running.add(1, ordering: .relaxed)
        var response: StreamingServerResponse<Output>
        do {
            response = try await next(request, context)
        } catch {
            finish(method, started, status: Self.status(of: error))
            throw error
        }
        switch response.accepted {
        case .failure(let error):
            finish(method, started, status: String(describing: error.code))
        case .success(var contents):
            let producer = contents.producer
            contents.producer = { [self] writer in
                do {
                    let trailers = try await producer(writer)
                    finish(method, started, status: "ok")
                    return trailers
                } catch {
                    finish(method, started, status: Self.status(of: error))
                    throw error
                }
            }
            response.accepted = .success(contents)
        }
        return response
    }

    private func finish(_ method: String, _ started: DispatchTime, status: String) {
        running.subtract(1, ordering: .relaxed)
        let milliseconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e6
        logger.info("gRPC \(method) \(status) \((milliseconds * 10).rounded() / 10)ms")
    }

    private static func status(of error: any Error) -> String {
        (error as? RPCError).map { String(describing: $0.code) } ?? "internalError"
    }
}
