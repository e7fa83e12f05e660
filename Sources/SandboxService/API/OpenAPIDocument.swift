/// The OpenAPI 3.1 description of the whole HTTP API (legacy, v1 files, processes, metrics), served at
/// `GET /openapi.json`. The document is the data file `openapi.json` next to this one, compiled in by the
/// EmbedOpenAPI build-tool plugin (as `source`); a change of a path, field, status code or header in the handlers
/// changes that file in the same commit. What several operations share is written once under `components` and used
/// by `$ref`; where an operation says more about a shared response, its reference overrides the `description` (as an
/// OpenAPI 3.1 Reference Object may). `Tests/e2e/test_openapi.py` checks that it validates and that every route is
/// in it, and `Tests/e2e/test_fuzz_schemathesis.py` fuzzes the server against it.
public enum OpenAPIDocument {
    /// Stands for the server's version in the data file's `info.version`, so the version is declared once, in
    /// `SandboxServer.version`.
    static let versionPlaceholder = "@SANDBOXD_VERSION@"

    /// The document as served (JSON): the data file, with the version filled in.
    public static let json = source.replacing(versionPlaceholder, with: SandboxServer.version)

    private static let body = Array(json.utf8)

    /// Adds `GET /openapi.json` (HEAD too, as for every GET route).
    public static func register(in router: inout Router) {
        router.add("GET", "/openapi.json") { _, _ in
            .response(HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: .bytes(body)))
        }
    }
}
