import FoundationEssentials
import Glibc

extension LegacyAPI {
    /// `GET /download/{path}`: the file's bytes, sent from its descriptor.
    func download(_ path: String) -> Reply {
        let notFound = APIError.message(404, "File not found")
        let resolved: String
        do { resolved = try resolve(path) } catch { return .failure(error) }
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, on a polling thread.
        let fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return .failure(notFound) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return .failure(notFound)
        }
        return .response(
            HTTPResponse(
                status: 200,
                headers: [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Disposition", Self.contentDisposition(filename: path)),
                ],
                body: .file(fd: fd, size: UInt64(info.st_size))))
    }

    /// `GET /list/{path}`: the directory's entries.
    func list(_ path: String) -> Reply {
        let resolved: String
        do { resolved = try resolve(path) } catch { return .failure(error) }
        guard let directory = opendir(resolved) else { return .failure(.message(404, "Path is not a directory")) }
        defer { closedir(directory) }
        var entries: [JSONValue] = []
        let directoryFD = dirfd(directory)
        while let entry = readdir(directory) {
            var info = stat()
            // By the raw name, so a name that is not UTF-8 is still found (and shown with U+FFFD). Like Python's
            // DirEntry.stat(): follow symlinks, and describe a dangling one by the link itself.
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String? in
                let cName = raw.bindMemory(to: CChar.self).baseAddress!
                let name = String(cString: cName)
                guard name != "." && name != ".." else { return nil }
                let found =
                    fstatat(directoryFD, cName, &info, 0) == 0
                    || fstatat(directoryFD, cName, &info, AT_SYMLINK_NOFOLLOW) == 0
                return found ? name : nil
            }
            guard let name else { continue }
            let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            entries.append([
                "name": .string(name),
                "size": .number(Double(info.st_size)),
                "type": .string(info.st_mode & S_IFMT == S_IFDIR ? "directory" : "file"),
                "mod_time": .number(modified),
            ])
        }
        return .response(.json(.array(entries)))
    }

    /// `GET /exists/{path}`.
    func exists(_ path: String) -> Reply {
        let resolved: String
        do { resolved = try resolve(path) } catch { return .failure(error) }
        var info = stat()
        return .response(.json(["path": .string(path), "exists": .bool(stat(resolved, &info) == 0)]))
    }

    /// Opens the destination of an upload: the multipart filename, relative to the root.
    func openUpload(_ filename: String) throws(APIError) -> any UploadSink {
        let relative = String(filename.drop(while: { $0 == "/" }))
        let last = relative.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
        guard !relative.isEmpty, last != ".", last != "..", !relative.hasSuffix("/") else {
            throw .message(400, "Invalid filename '\(filename)': it must name a file")
        }
        // Checked before anything is created: a name the filesystem would refuse must not leave directories behind.
        guard relative.utf8.count < Int(PATH_MAX) - root.path.utf8.count,
            !relative.split(separator: "/").contains(where: { $0.utf8.count > Int(NAME_MAX) })
        else { throw .message(400, "Invalid filename '\(filename.prefix(100))…': too long") }
        let destination = try resolve(relative)
        guard destination != root.path else {
            throw .message(400, "Invalid filename '\(filename)': it must name a file")
        }
        var info = stat()
        if stat(destination, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
            throw .message(400, "Invalid filename '\(filename)': it is a directory")
        }
        do {
            return FileUploadSink(file: try AtomicFile(destination: destination))
        } catch {
            throw Self.uploadError(error)
        }
    }

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

    static func uploadError(_ error: FileError) -> APIError {
        switch error {
        case .noSpace: .message(507, "File upload failed: no space left on device")
        case .permissionDenied: .message(403, "File upload failed: permission denied")
        case .notADirectory: .message(400, "File upload failed: a parent of the destination is not a directory")
        case .isADirectory: .message(400, "File upload failed: the destination is a directory")
        case .notFound: .message(400, "File upload failed: the destination directory does not exist")
        case .nameTooLong: .message(400, "File upload failed: file name too long")
        case .other(let message): .message(500, "File upload failed: \(message)")
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

/// Adapts `AtomicFile` to the HTTP layer's upload sink.
final class FileUploadSink: UploadSink {
    private let file: AtomicFile

    init(file: AtomicFile) { self.file = file }

    func write(_ bytes: UnsafeRawBufferPointer) throws(APIError) {
        do { try file.write(bytes) } catch { throw LegacyAPI.uploadError(error) }
    }

    func commit() throws(APIError) {
        do { try file.commit() } catch { throw LegacyAPI.uploadError(error) }
    }

    func abort() { file.abort() }
}
