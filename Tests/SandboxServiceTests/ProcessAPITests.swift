import Glibc
import Testing

@testable import SandboxService

private typealias StartRequest = V1API.StartRequest

private func decode(_ json: String) throws(APIError) -> StartRequest {
    try StartRequest.decode(Array(json.utf8))
}

/// The status and `code` `POST /v1/processes` answers `json` with, when it is refused; nil if a process started.
private func refusal(_ json: String) throws -> (status: Int, code: String)? {
    let directory = try TemporaryDirectory("sandboxd-process-start")
    defer { directory.remove() }
    let request = HTTPRequest(method: "POST", path: "/v1/processes", body: Array(json.utf8))
    guard
        case .response(let response) = V1API(sandbox: try directory.sandbox(), environment: [:]).startProcess(request),
        case .bytes(let body) = response.body, response.status != 201
    else { return nil }
    guard case .string(let code)? = JSONValue.parse(body)?["code"] else { return (response.status, "?") }
    return (response.status, code)
}

@Suite struct ProcessAPITests {
    // MARK: paths

    /// The routes of the processes API, in a router of their own.
    private static func routes() throws -> Router {
        let directory = try TemporaryDirectory("sandboxd-process-routes")
        defer { directory.remove() }
        var router = Router()
        V1API(sandbox: try directory.sandbox(), environment: [:]).registerProcesses(in: &router)
        return router
    }

    /// The route `method path` reaches (its pattern) and the id it captured; nil when it reaches none.
    private static func endpoint(_ router: Router, _ method: String, _ path: String) -> (String, String)? {
        guard case .route(let route, let parameters) = router.match(method: method, path: path) else { return nil }
        return (route.label, parameters["id"])
    }

    @Test func pathsNameAProcessAndAnAction() throws {
        let router = try Self.routes()
        #expect(Self.endpoint(router, "GET", "/v1/processes/ab12")! == ("/v1/processes/{id}", "ab12"))
        for action in ["events", "wait"] {
            #expect(
                Self.endpoint(router, "GET", "/v1/processes/ab12/\(action)")! == (
                    "/v1/processes/{id}/\(action)", "ab12"
                ))
        }
        for action in ["stdin", "signal", "resize"] {
            #expect(
                Self.endpoint(router, "POST", "/v1/processes/ab12/\(action)")! == (
                    "/v1/processes/{id}/\(action)", "ab12"
                ))
        }
    }

    @Test(arguments: ["", "/", "ab12/", "ab12/bogus", "ab12/events/more", "/events", "ab12//events", "ab12/Events"])
    func pathsThatNameNoEndpoint(path: String) throws {
        let router = try Self.routes()
        for method in ["GET", "POST", "DELETE", "PUT"] {
            guard case .failure(let error) = router.match(method: method, path: "/v1/processes/" + path) else {
                Issue.record("\(method) /v1/processes/\(path) reached a route")
                continue
            }
            #expect(error.status == 404 && error.body == ["detail": "Not Found"], "\(method) \(path)")
        }
    }

    @Test func eachEndpointAllowsItsMethods() throws {
        let router = try Self.routes()
        func allowed(_ path: String) -> Set<String> {
            guard case .failure(let error) = router.match(method: "PATCH", path: path), error.status == 405,
                let allow = error.headers.first(where: { $0.0 == "Allow" })?.1
            else { return [] }
            return Set(allow.split(separator: ", ").map(String.init))
        }
        #expect(allowed("/v1/processes/x") == ["GET", "HEAD", "DELETE"])
        #expect(allowed("/v1/processes/x/events") == ["GET", "HEAD"])
        #expect(allowed("/v1/processes/x/wait") == ["GET", "HEAD"])
        #expect(allowed("/v1/processes/x/stdin") == ["POST", "DELETE"])
        #expect(allowed("/v1/processes/x/signal") == ["POST"])
        #expect(allowed("/v1/processes/x/resize") == ["POST"])
        #expect(allowed("/v1/processes") == ["GET", "HEAD", "POST"])
    }

    @Test func idsAreEightLowercaseAlphanumerics() throws {
        let router = try Self.routes()
        for _ in 0..<200 {
            let id = SandboxService.ProcessTable.makeID()
            #expect(id.count == 8)
            #expect(id.allSatisfy { ("0"..."9").contains($0) || ("a"..."z").contains($0) })
            #expect(Self.endpoint(router, "GET", "/v1/processes/\(id)")?.1 == id)
        }
    }

    // MARK: signals

    @Test func signalNames() {
        #expect(ProcessSignal.name(of: SIGINT) == "SIGINT")
        #expect(ProcessSignal.name(of: SIGKILL) == "SIGKILL")
        #expect(ProcessSignal.name(of: SIGWINCH) == "SIGWINCH")
        #expect(ProcessSignal.name(of: 40) == "SIG40")
    }

    @Test func onlyTheListedSignalsMayBeSent() {
        let expected: [String: Int32] = [
            "SIGINT": SIGINT, "SIGTERM": SIGTERM, "SIGKILL": SIGKILL, "SIGHUP": SIGHUP, "SIGQUIT": SIGQUIT,
            "SIGUSR1": SIGUSR1, "SIGUSR2": SIGUSR2,
        ]
        for (name, number) in expected { #expect(ProcessSignal.number(named: name) == number) }
        for name in ["SIGSTOP", "SIGCONT", "INT", "sigint", "SIGINT ", "2", ""] {
            #expect(ProcessSignal.number(named: name) == nil)
        }
    }

    @Test func exitDataNamesTheSignal() {
        let killed = Termination(waitStatus: SIGINT, timedOut: false)
        #expect(
            EventSubscriber.exitData(killed).encoded()
                == Array(#"{"exit_code":130,"signal":"SIGINT","timed_out":false}"#.utf8))
        let exited = Termination(waitStatus: 3 << 8, timedOut: false)
        #expect(
            EventSubscriber.exitData(exited).encoded()
                == Array(#"{"exit_code":3,"signal":null,"timed_out":false}"#.utf8))
    }

    // MARK: start requests

    @Test func commandForms() throws {
        #expect(try decode(#"{"command": ["ls", "-l", "a b"]}"#).argv == ["ls", "-l", "a b"])
        #expect(try decode(#"{"command": "ls -l 'a b'"}"#).argv == ["ls", "-l", "a b"])
        #expect(try decode(#"{"command": "ls | wc -l", "shell": true}"#).argv == ["/bin/sh", "-c", "ls | wc -l"])
        #expect(try decode(#"{"command": ["ls"], "shell": false}"#).argv == ["ls"])
    }

    @Test func defaults() throws {
        let request = try decode(#"{"command": ["true"], "cwd": null, "env": null, "pty": null, "timeout": null}"#)
        #expect(request == StartRequest(argv: ["true"]))
    }

    @Test func everyField() throws {
        let request = try decode(
            #"{"command": ["sh"], "cwd": "work", "env": {"A": "1", "B": null}, "stdin": true,"#
                + #" "pty": {"cols": 100, "rows": 30}, "timeout": 2.5}"#)
        #expect(request.cwd == "work")
        #expect(request.environment == [.init(name: "A", value: "1"), .init(name: "B", value: nil)])
        #expect(request.stdin)
        #expect(request.terminal == TerminalSize(columns: 100, rows: 30))
        #expect(request.timeout == 2.5)
    }

    @Test(arguments: [
        "", "[]", "{", #"{}"#, #"{"command": []}"#, #"{"command": [""]}"#, #"{"command": ""}"#, #"{"command": "  "}"#,
        #"{"command": [1]}"#, #"{"command": {}}"#, #"{"command": "a 'b"}"#, #"{"command": "a\\"}"#,
        #"{"command": ["a\u0000"]}"#, #"{"command": ["ls"], "shell": true}"#, #"{"command": "ls", "shell": 1}"#,
        #"{"command": "ls", "stdin": "yes"}"#, #"{"command": "ls", "cwd": 1}"#, #"{"command": "ls", "env": []}"#,
        #"{"command": "ls", "env": {"": "x"}}"#, #"{"command": "ls", "env": {"A=B": "x"}}"#,
        #"{"command": "ls", "env": {"A": 1}}"#, #"{"command": "ls", "env": {"A": "\u0000"}}"#,
        #"{"command": "ls", "pty": {}}"#,
        #"{"command": "ls", "pty": {"cols": 80, "rows": 0}}"#, #"{"command": "ls", "pty": {"cols": 65536, "rows": 1}}"#,
        #"{"command": "ls", "pty": {"cols": 1.5, "rows": 1}}"#, #"{"command": "ls", "pty": [80, 24]}"#,
        #"{"command": "ls", "timeout": 0}"#, #"{"command": "ls", "timeout": -1}"#,
        #"{"command": "ls", "timeout": "1"}"#,
        #"{"command": "ls", "timeout": true}"#,
    ])
    func invalidRequestsAreInvalidArguments(json: String) throws {
        let refused = try refusal(json)
        #expect(refused?.status == 400, "\(json)")
        #expect(refused?.code == "INVALID_ARGUMENT", "\(json)")
    }

    @Test func environmentChangesApplyOverTheBase() {
        let base = ["PATH=/bin", "HOME=/root", "A=old", "EMPTY="]
        let changes: [(String, String?)] = [("A", "new"), ("HOME", nil), ("NEW", "x=y"), ("GONE", nil), ("NEW", "z")]
        #expect(Sandbox.environment(base: base, applying: changes) == ["PATH=/bin", "A=new", "EMPTY=", "NEW=z"])
        #expect(Sandbox.environment(base: base, applying: []) == base)
    }
}
