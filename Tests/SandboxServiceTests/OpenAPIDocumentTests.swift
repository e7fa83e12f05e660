import Foundation
import Logging
import Testing

@testable import SandboxService

/// The OpenAPI document is the data file `Sources/SandboxService/API/openapi.json`, compiled in by the EmbedOpenAPI
/// plugin: the server serves exactly that file, and it documents exactly the server's routes.
@Suite("OpenAPI document", .timeLimit(.minutes(1)))
struct OpenAPIDocumentTests {
    /// The data file as it is in the repository now, read from disk (not the copy compiled into the binary).
    static func dataFile(file: String = #filePath) throws -> [UInt8] {
        let path = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/SandboxService/API/openapi.json").path
        return try #require(FileManager.default.contents(atPath: path).map(Array.init), "cannot read \(path)")
    }

    /// The data file parsed, with the version placeholder left in.
    static func document() throws -> JSONValue {
        try #require(JSONValue.parse(dataFile()), "openapi.json is not JSON")
    }

    private static func withServer<T>(_ body: (UInt16, SandboxServer) throws -> T) throws -> T {
        let directory = try TemporaryDirectory("sandboxd-openapi")
        defer { directory.remove() }
        var options = SandboxServer.Options()
        options.host = "127.0.0.1"
        options.port = 0
        options.root = directory.file("root")
        try FileManager.default.createDirectory(atPath: options.root, withIntermediateDirectories: true)
        let server = try SandboxServer(
            options: options, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        defer { server.shutdown() }
        return try body(try server.start(), server)
    }

    @Test("GET /openapi.json serves the data file byte for byte, with the server's version filled in")
    func servesTheDataFile() throws {
        let expected = try Array(
            String(decoding: Self.dataFile(), as: UTF8.self)
                .replacing(OpenAPIDocument.versionPlaceholder, with: SandboxServer.version).utf8)
        try Self.withServer { port, _ in
            let response = try TestHTTP.get(port: port, "/openapi.json")
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "application/json")
            // Not `#expect(body == expected)`: its failure would print both arrays, 70,000 numbers each.
            if response.body != expected {
                let common = zip(response.body, expected).prefix { $0 == $1 }.count
                Issue.record(
                    """
                    the server does not serve Sources/SandboxService/API/openapi.json: \(response.body.count) bytes \
                    served, \(expected.count) expected, the same up to byte \(common)
                    """)
            }
            let head = try TestHTTP.request(port: port, "HEAD", "/openapi.json")
            #expect(head.status == 200 && head.body.isEmpty)
        }
    }

    @Test("the version is written once, as info.version's placeholder, and served as SandboxServer.version")
    func version() throws {
        let text = String(decoding: try Self.dataFile(), as: UTF8.self)
        #expect(text.ranges(of: OpenAPIDocument.versionPlaceholder).count == 1)
        #expect(try Self.document()["info"]?["version"] == .string(OpenAPIDocument.versionPlaceholder))
        let served = try #require(JSONValue.parse(Array(OpenAPIDocument.json.utf8)))
        #expect(served["info"]?["version"] == .string(SandboxServer.version))
        #expect(!OpenAPIDocument.json.contains(OpenAPIDocument.versionPlaceholder))
    }

    /// The documented operations: (METHOD, path template).
    static func operations(_ document: JSONValue) throws -> [(method: String, template: String)] {
        guard case .object(let paths)? = document["paths"] else { throw TestFailure("no paths") }
        let methods = ["get", "head", "post", "put", "delete", "patch", "options"]
        return paths.flatMap { template, item -> [(method: String, template: String)] in
            guard case .object(let members) = item else { return [] }
            return members.map(\.0).filter(methods.contains).map { ($0.uppercased(), template) }
        }
    }

    @Test("every route the server has is documented: its method and its pattern as the document writes it")
    func everyRouteIsDocumented() throws {
        let operations = try Self.operations(Self.document())
        try Self.withServer { _, server in
            #expect(server.router.routes.count > 10)
            for route in server.router.routes {
                let documented = operations.contains { $0 == (route.method, route.label) }
                #expect(documented, "\(route.method) \(route.label) is not in openapi.json")
            }
        }
    }

    @Test("every documented operation is routed: its template with sample values reaches a route")
    func everyOperationIsRouted() throws {
        let operations = try Self.operations(Self.document())
        #expect(operations.count > 20)
        try Self.withServer { _, server in
            for (method, template) in operations {
                let path = template.replacing("{path}", with: "dir/file.txt").replacing("{id}", with: "0k3x9a7b")
                if case .failure = server.router.match(method: method, path: path) {
                    Issue.record("\(method) \(template) is documented but \(method) \(path) reaches no route")
                }
            }
        }
    }
}
