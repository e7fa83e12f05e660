extension LegacyAPI {
    /// `GET /download/{path}`: the file's bytes, sent from the descriptor the Files layer opened.
    func download(_ path: String) -> Reply {
        let file: (fd: Int32, status: FileTree.Status)
        do { file = try sandbox.openFile(path) } catch { return .failure(Self.failure(error, .download)) }
        return .response(
            HTTPResponse(
                status: 200,
                headers: [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Disposition", Self.contentDisposition(filename: path)),
                ],
                body: .file(fd: file.fd, size: file.status.size)))
    }

    /// `GET /list/{path}`: the directory's entries (a symlink described by its target when that is inside the root,
    /// left out otherwise).
    func list(_ path: String) -> Reply {
        let entries: [FileTree.Entry]
        do { entries = try sandbox.list(path) } catch { return .failure(Self.failure(error, .list)) }
        return .response(
            .json(
                .array(
                    entries.map { entry in
                        let status = entry.status
                        return [
                            "name": .string(entry.name),
                            "size": .number(Double(status.size)),
                            "type": .string(status.isDirectory ? "directory" : "file"),
                            "mod_time": .number(
                                Double(status.modifiedSeconds) + Double(status.modifiedNanoseconds) / 1e9),
                        ]
                    })))
    }

    /// `GET /exists/{path}`.
    func exists(_ path: String) -> Reply {
        let exists: Bool
        do { exists = try sandbox.exists(path) } catch { return .failure(Self.failure(error, .exists)) }
        return .response(.json(["path": .string(path), "exists": .bool(exists)]))
    }

    /// Opens the destination of an upload: the multipart filename, relative to the root. Confinement is checked
    /// first, so any name that leads out of the root (`..`, `a/../..`) is the reference's 403 whatever else is wrong
    /// with it; then a name that names no file (`.`, `a/..`, a trailing slash) or a directory is a 400.
    func openUpload(_ filename: String) throws(APIError) -> any UploadSink {
        let relative = String(filename.drop(while: { $0 == "/" }))
        let destination: FileTree.Destination
        do {
            destination = try sandbox.destination(relative)
        } catch {
            switch error.cause {
            case .file(.isADirectory)? where Self.namesNoFile(relative):
                throw .message(400, "Invalid filename '\(filename)': it must name a file")
            case .file(.isADirectory)?: throw .message(400, "Invalid filename '\(filename)': it is a directory")
            default: throw Self.failure(error, .upload)
            }
        }
        guard !Self.namesNoFile(relative) else {
            throw .message(400, "Invalid filename '\(filename)': it must name a file")
        }
        do {
            return NewFileSink(
                file: try sandbox.create(destination, permissions: nil), failure: { Self.failure($0, .upload) })
        } catch {
            throw Self.failure(error, .upload)
        }
    }

    /// Empty, ending in a slash, or ending in `.` or `..` (compared as bytes, as the kernel splits).
    static func namesNoFile(_ relative: String) -> Bool {
        let bytes = Array(relative.utf8)
        guard let last = bytes.split(separator: slash, omittingEmptySubsequences: false).last, !last.isEmpty else {
            return true
        }
        return last.elementsEqual(".".utf8) || last.elementsEqual("..".utf8)
    }

    /// What a file endpoint answers for a file error: the one place they become statuses and the reference's
    /// messages.
    enum FileEndpoint { case download, list, exists, upload }

    static func failure(_ error: SandboxError, _ endpoint: FileEndpoint) -> APIError {
        guard case .file(let code)? = error.cause else { return .message(500, error.message) }
        let path = error.path ?? ""
        switch (code, endpoint) {
        case (.escapesRoot, _): return accessDenied
        case (.tooManyLinks, _): return .message(400, "Too many levels of symbolic links in '\(path)'")
        case (.invalidPath, _): return .message(400, "Invalid path '\(path)'")
        case (.nameTooLong, .upload): return .message(400, "Invalid filename '\(path.prefix(100))…': too long")
        case (.permissionDenied, .upload): return .message(403, "File upload failed: permission denied")
        case (.noSpace, .upload): return .message(507, "File upload failed: no space left on device")
        case (.notADirectory, .upload):
            return .message(400, "File upload failed: a parent of the destination is not a directory")
        case (.isADirectory, .upload): return .message(400, "File upload failed: the destination is a directory")
        case (.notFound, .upload): return .message(400, "File upload failed: the destination directory does not exist")
        case (.other(let reason), .upload): return .message(500, "File upload failed: \(reason)")
        case (.permissionDenied, _): return .message(403, "Permission denied")
        case (.other(let reason), _): return .message(500, reason)
        case (_, .list): return .message(404, "Path is not a directory")
        case (_, .upload): return .message(400, "File upload failed: \(error.message)")
        case (_, .download), (_, .exists): return .message(404, "File not found")
        }
    }

    static let accessDenied = APIError.message(403, "Access denied")

    func uploadFinished(_ outcome: UploadOutcome?) -> Reply {
        switch outcome {
        case .stored(let filename)?:
            return .response(.json(["message": .string("File '\(filename)' uploaded successfully.")]))
        case .failed(let error)?:
            return .failure(error)
        case .missingField?, nil:
            return .failure(
                .validation([
                    ValidationIssue(type: "missing", loc: ["body", "file"], msg: "Field required", input: .null)
                ]))
        }
    }

    /// Starlette's FileResponse header: a plain quoted filename, or RFC 5987 `filename*` when it needs escaping.
    static func contentDisposition(filename: String) -> String {
        // Python's urllib.parse.quote with safe="/": ASCII letters, digits and "/_.-~" stay, every other byte is %XX.
        var quoted = ""
        for byte in filename.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "/"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "-"), UInt8(ascii: "~"):
                quoted.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                quoted.unicodeScalars.append("%")
                quoted.unicodeScalars.append(hex[Int(byte >> 4)])
                quoted.unicodeScalars.append(hex[Int(byte & 15)])
            }
        }
        return quoted == filename ? "attachment; filename=\"\(filename)\"" : "attachment; filename*=utf-8''\(quoted)"
    }
}
