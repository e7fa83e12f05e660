/// Files: `GET`/`HEAD`/`PUT`/`DELETE /v1/files/{path}`.
extension V1API {
    func registerFiles(in router: inout Router) {
        router.add("GET", "/v1/files/{path...}") { request, _ in getFile(request) }
        router.add("PUT", "/v1/files/{path...}", body: .perRequest(putBody)) { request, outcome in
            putFinished(outcome, path: request.parameters["path"])
        }
        router.add("DELETE", "/v1/files/{path...}") { request, _ in deleteFile(request) }
    }

    /// `GET /v1/files/{path}` (and HEAD): a file's bytes, or a directory's listing.
    func getFile(_ request: HTTPRequest) -> Reply {
        let path = request.parameters["path"]
        let contents: FileTree.Contents
        do { contents = try sandbox.read(path) } catch { return .failure(V1Error.answer(error)) }
        switch contents {
        case .file(let fd, let status):
            return .response(Self.fileResponse(fd: fd, status: status, headers: request.headers))
        case .directory(_, let entries):
            return .response(.json(Self.listing(path: path, entries: entries)))
        }
    }

    /// Decides how a `PUT` body is received, before any of it arrives: the mode and the destination are checked
    /// first, so a refused write reads no body. A `multipart/form-data` body gives its `file` part; any other is
    /// the content itself.
    func putBody(_ request: HTTPRequest) throws(APIError) -> BodyMode {
        let path = request.parameters["path"]
        let mode = request.query["mode"] ?? ""
        guard let permissions = Self.permissions(mode) else {
            throw V1Error.answer(.invalidArgument, "mode \"\(mode)\" must match ^0[0-7]{3}$")
        }
        let destination: FileTree.Destination
        do { destination = try sandbox.destination(path) } catch { throw V1Error.answer(error) }
        let sandbox = self.sandbox
        let open: @Sendable () throws(APIError) -> any UploadSink = { () throws(APIError) in
            do throws(SandboxError) {
                return NewFileSink(
                    file: try sandbox.create(destination, permissions: permissions), failure: V1Error.answer)
            } catch {
                throw V1Error.answer(error)
            }
        }
        guard Self.isMultipart(request.headers["content-type"]) else { return .stream(open: open) }
        return .upload(field: "file", open: { _ throws(APIError) in try open() })
    }

    func putFinished(_ outcome: UploadOutcome?, path: String) -> Reply {
        switch outcome {
        case .stored?: .response(HTTPResponse(status: 204, body: .bytes([])))
        case .failed(let error)?: .failure(V1Error.conforming(error))
        case .missingField?:
            .failure(V1Error.answer(.invalidArgument, "multipart body is missing the required \"file\" part"))
        case nil: .failure(V1Error.answer(.internal, "the body of '\(Self.shown(path))' was not received"))
        }
    }

    /// `DELETE /v1/files/{path}[?recursive=true]`.
    func deleteFile(_ request: HTTPRequest) -> Reply {
        let path = request.parameters["path"]
        let text = request.query["recursive"] ?? ""
        guard let recursive = Self.boolean(text) else {
            return .failure(V1Error.answer(.invalidArgument, "recursive \"\(text)\" must be a boolean"))
        }
        do { try sandbox.remove(path, recursive: recursive) } catch { return .failure(V1Error.answer(error)) }
        return .response(HTTPResponse(status: 204, body: .bytes([])))
    }

    /// The JSON of a directory listing: the request path with a leading slash, and the entries.
    static func listing(path: String, entries: [FileTree.Entry]) -> JSONValue {
        [
            "path": .string(path.hasPrefix("/") ? path : "/" + path),
            "entries": .array(
                entries.map { entry in
                    [
                        "name": .string(entry.name),
                        "size": .number(Double(entry.status.size)),
                        "type": .string(entry.status.isDirectory ? "directory" : "file"),
                        "modified_at": .string(HTTPDate.rfc3339(entry.status.modifiedSeconds)),
                        "mode": .string(Self.octal(entry.status.permissions)),
                    ]
                }),
        ]
    }

    /// The `mode` query parameter: `^0[0-7]{3}$`, or empty for the default 0644; nil when invalid.
    static func permissions(_ text: String) -> UInt32? {
        if text.isEmpty { return 0o644 }
        let digits = Array(text.utf8)
        guard digits.count == 4, digits[0] == UInt8(ascii: "0"),
            digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) })
        else { return nil }
        return digits.reduce(0) { $0 * 8 + UInt32($1 - UInt8(ascii: "0")) }
    }

    /// Permission bits as four octal digits ("0644"), as the Go daemon prints them.
    static func octal(_ permissions: UInt32) -> String {
        let digits = String(permissions & 0o777, radix: 8)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }

    /// A boolean query parameter as Go's `strconv.ParseBool` reads it; empty is false, anything else unknown is nil.
    static func boolean(_ text: String) -> Bool? {
        switch text {
        case "", "0", "f", "F", "false", "FALSE", "False": false
        case "1", "t", "T", "true", "TRUE", "True": true
        default: nil
        }
    }

    /// True when the media type (parameters aside) is `multipart/form-data`.
    static func isMultipart(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first ?? ""
        return mediaType.trimmingWhitespace().lowercased() == "multipart/form-data"
    }

    /// A request path as messages show it: relative to the root, with a leading slash.
    static func shown(_ path: String) -> String {
        "/" + path.drop { $0 == "/" }
    }
}
