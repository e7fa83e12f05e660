import Foundation
import Testing

@testable import SandboxService

/// A router whose handlers answer with their own name, so a test can see which route matched.
private func makeRouter() -> Router {
    var router = Router()
    for (method, pattern, name) in [
        ("GET", RoutePattern("/"), "root"),
        ("POST", "/execute", "execute"),
        ("POST", "/execute/stream", "stream"),
        ("GET", "/download/{path...}", "download"),
        ("GET", "/files/{path...}", "files-get"),
        ("PUT", "/files/{path...}", "files-put"),
        ("DELETE", "/files/{path...}", "files-delete"),
    ] {
        router.add(.init(method, pattern) { _, _ in .response(.json(["route": .string(name)])) })
    }
    return router
}

/// What a match gives: the matched route's name and captured path, or the error's status, body and headers.
private enum Outcome: Equatable {
    case route(String, parameter: String)
    case failure(status: Int, body: String, allow: String?)
}

private func outcome(_ method: String, _ path: String, router: Router = makeRouter()) -> Outcome {
    switch router.match(method: method, path: path) {
    case .route(let route, let parameters):
        let parameter = parameters["path"]
        let reply = route.handler(HTTPRequest(method: method, path: path, parameters: parameters), nil)
        guard case .response(let response) = reply, case .bytes(let bytes) = response.body,
            case .string(let name)? = JSONValue.parse(bytes)?["route"]
        else { return .route("?", parameter: parameter) }
        return .route(name, parameter: parameter)
    case .failure(let error):
        let allow = error.headers.first { $0.0 == "Allow" }?.1
        return .failure(status: error.status, body: String(decoding: error.body.encoded(), as: UTF8.self), allow: allow)
    }
}

private let notFound = Outcome.failure(status: 404, body: #"{"detail":"Not Found"}"#, allow: nil)

private func methodNotAllowed(allow: String) -> Outcome {
    .failure(status: 405, body: #"{"detail":"Method Not Allowed"}"#, allow: allow)
}

@Suite(.timeLimit(.minutes(1))) struct RouterTests {
    @Test func exactRoutesMatchOnlyTheirPath() {
        #expect(outcome("GET", "/") == .route("root", parameter: ""))
        #expect(outcome("POST", "/execute") == .route("execute", parameter: ""))
        #expect(outcome("POST", "/execute/stream") == .route("stream", parameter: ""))
        #expect(outcome("POST", "/execute/") == notFound)
        #expect(outcome("POST", "/execute/streamx") == notFound)
        #expect(outcome("GET", "//") == notFound)
        #expect(outcome("GET", "") == notFound)
    }

    @Test func prefixRoutesCaptureTheRest() {
        #expect(outcome("GET", "/download/a.txt") == .route("download", parameter: "a.txt"))
        #expect(outcome("GET", "/download/dir/sub/a.txt") == .route("download", parameter: "dir/sub/a.txt"))
        #expect(outcome("GET", "/download//abs") == .route("download", parameter: "/abs"))
        #expect(outcome("GET", "/download/../../etc") == .route("download", parameter: "../../etc"))
        #expect(outcome("GET", "/download/") == .route("download", parameter: ""))
    }

    @Test func prefixNeedsItsSlash() {
        #expect(outcome("GET", "/download") == notFound)
        #expect(outcome("GET", "/downloads/x") == notFound)
    }

    @Test func headIsServedByGet() {
        #expect(outcome("HEAD", "/") == .route("root", parameter: ""))
        #expect(outcome("HEAD", "/download/x") == .route("download", parameter: "x"))
        #expect(outcome("HEAD", "/nowhere") == notFound)
    }

    @Test func unknownPathIs404InFastAPIShape() {
        #expect(outcome("GET", "/nowhere") == notFound)
        #expect(outcome("POST", "/nowhere") == notFound)
        guard case .failure(let error) = makeRouter().match(method: "GET", path: "/nowhere") else {
            Issue.record("matched")
            return
        }
        let response = error.response
        #expect(response.status == 404)
        #expect(response.headers.contains { $0.0 == "Content-Type" && $0.1 == "application/json" })
    }

    @Test func wrongMethodIs405WithAllow() {
        #expect(outcome("GET", "/execute") == methodNotAllowed(allow: "POST"))
        #expect(outcome("DELETE", "/execute/stream") == methodNotAllowed(allow: "POST"))
        #expect(outcome("POST", "/") == methodNotAllowed(allow: "GET, HEAD"))
        #expect(outcome("PUT", "/download/x") == methodNotAllowed(allow: "GET, HEAD"))
        guard case .failure(let error) = makeRouter().match(method: "GET", path: "/execute") else {
            Issue.record("matched")
            return
        }
        #expect(error.response.headers.contains { $0.0 == "Allow" && $0.1 == "POST" })
    }

    @Test func allowListsEveryMethodOfThePath() {
        guard case .failure(status: 405, _, let allow?) = outcome("POST", "/files/a") else {
            Issue.record("expected 405")
            return
        }
        #expect(
            Set(allow.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) == [
                "GET", "HEAD", "PUT", "DELETE",
            ])
        #expect(outcome("PUT", "/files/a") == .route("files-put", parameter: "a"))
        #expect(outcome("DELETE", "/files/a/b") == .route("files-delete", parameter: "a/b"))
    }

    @Test func methodsAreCaseSensitive() {
        // HTTP methods are case-sensitive tokens: "get" is not GET.
        #expect(outcome("get", "/") == methodNotAllowed(allow: "GET, HEAD"))
    }

    @Test func firstMatchingRouteWins() {
        var router = Router()
        router.add(.init("GET", "/a/{path...}") { _, _ in .response(.json(["route": "broad"])) })
        router.add(.init("GET", "/a/b/{path...}") { _, _ in .response(.json(["route": "narrow"])) })
        #expect(outcome("GET", "/a/b/c", router: router) == .route("broad", parameter: "b/c"))
    }

    @Test func emptyRouterFindsNothing() {
        #expect(outcome("GET", "/", router: Router()) == notFound)
    }

    @Test func routesAddedByPatternReadABodyUpToTheRoutersLimit() {
        var router = Router(maxBodyBytes: 300)
        router.add("POST", "/x") { _, _ in .response(.json(["route": "x"])) }
        router.add("PUT", "/y", body: .stream { () throws(APIError) in throw .notFound }) { _, _ in
            .response(.json(["route": "y"]))
        }
        guard case .buffered(let limit) = router.routes[0].body, case .stream = router.routes[1].body else {
            Issue.record("not the bodies asked for")
            return
        }
        #expect(limit == 300)
        #expect(Router().maxBodyBytes == 1 << 20)
    }

    @Test func routesDefaultToA1MiBBufferedBody() {
        let route = Router.Route("POST", "/x") { _, _ in .response(.json(["route": "x"])) }
        guard case .buffered(let limit) = route.body else {
            Issue.record("not buffered")
            return
        }
        #expect(limit == 1 << 20)
    }

    @Test func segmentCapturesTakeOneNonEmptySegment() {
        let pattern = RoutePattern("/v1/processes/{id}/stdin")
        #expect(pattern.match("/v1/processes/k3x9/stdin") == PathParameters([("id", "k3x9")]))
        #expect(pattern.match("/v1/processes/a b%/stdin")?["id"] == "a b%")
        for path in [
            "/v1/processes//stdin", "/v1/processes/a/b/stdin", "/v1/processes/k3x9/stdin/", "/v1/processes/k3x9",
            "/v1/processes/k3x9/stdinx", "/v1/processes/stdin",
        ] {
            #expect(pattern.match(path) == nil, "\(path)")
        }
        #expect(RoutePattern("/v1/processes/{id}").match("/v1/processes/\u{301}x")?["id"] == "\u{301}x")
    }

    @Test func restCapturesTakeTheRestSlashesIncluded() {
        let pattern = RoutePattern("/exists/{path...}")
        #expect(pattern.match("/exists/a/b/")?["path"] == "a/b/")
        #expect(pattern.match("/exists/")?["path"] == "")
        // A rest that starts with a combining mark stays a rest: the match is by bytes, not Characters.
        #expect(pattern.match("/exists/\u{301}x")?["path"] == "\u{301}x")
        #expect(pattern.match("/exists") == nil)
        #expect(RoutePattern("/").match("/") == PathParameters())
    }

    @Test func templatesAreWrittenAsTheOpenAPIDocumentWritesThem() {
        #expect(RoutePattern("/download/{path...}").template == "/download/{path}")
        #expect(RoutePattern("/v1/processes/{id}/wait").template == "/v1/processes/{id}/wait")
        #expect(RoutePattern("/").template == "/")
        #expect(Router.Route("GET", "/list/{path...}") { _, _ in .response(.json(.null)) }.label == "/list/{path}")
    }

    @Test func allowIsComputedFromTheRoutesThatMatchThePath() {
        var router = Router()
        for (method, pattern) in [
            ("GET", "/p/{id}"), ("DELETE", "/p/{id}"), ("POST", "/p/{id}/stdin"), ("DELETE", "/p/{id}/stdin"),
            ("GET", "/p/{id}/events"),
        ] {
            router.add(.init(method, RoutePattern(pattern)) { _, _ in .response(.json(["route": .string(pattern)])) })
        }
        #expect(outcome("POST", "/p/x", router: router) == methodNotAllowed(allow: "GET, DELETE, HEAD"))
        #expect(outcome("GET", "/p/x/stdin", router: router) == methodNotAllowed(allow: "POST, DELETE"))
        #expect(outcome("HEAD", "/p/x/stdin", router: router) == methodNotAllowed(allow: "POST, DELETE"))
        #expect(outcome("POST", "/p/x/events", router: router) == methodNotAllowed(allow: "GET, HEAD"))
        for path in ["/p/", "/p//events", "/p/x/", "/p/x/bogus", "/p/x/events/more"] {
            #expect(outcome("GET", path, router: router) == notFound, "\(path)")
            #expect(outcome("POST", path, router: router) == notFound, "\(path)")
        }
        guard case .route(let route, let parameters) = router.match(method: "DELETE", path: "/p/k3x9/stdin") else {
            Issue.record("no route")
            return
        }
        #expect(route.label == "/p/{id}/stdin" && parameters["id"] == "k3x9")
    }
}
