import CMicroHTTPD

/// Streams one file part of a `multipart/form-data` body into an `UploadSink`, using libmicrohttpd's post processor
/// (which also handles urlencoded bodies, where no part has a filename). Polling thread only.
final class UploadReceiver: MultipartReceiver {
    private let field: String
    private let open: @Sendable (String) throws(APIError) -> any UploadSink
    private var processor: OpaquePointer?
    private var sink: (any UploadSink)?
    private var filename: String?
    private var error: APIError?
    /// Set once the chosen part ended (another part started); later parts of the same name are ignored.
    private var partClosed = false
    /// Bytes of the file part written so far.
    private var written = 0
    /// The post processor stopped after the file part was complete (an epilogue after the closing boundary makes
    /// libmicrohttpd fail); the rest of the body is ignored.
    private var stopped = false

    /// Size of the post processor's buffer: a part's data reaches the sink in pieces of at most this size.
    private static let bufferSize = 64 * 1024

    init(
        connection: OpaquePointer, field: String, open: @escaping @Sendable (String) throws(APIError) -> any UploadSink
    ) {
        self.field = field
        self.open = open
        processor = MHD_create_post_processor(
            connection, Self.bufferSize, UploadReceiver.iterator, Unmanaged.passUnretained(self).toOpaque())
        if processor == nil {
            error = .validation([
                ValidationIssue(type: "missing", loc: ["body", .string(field)], msg: "Field required", input: .null)
            ])
        }
    }

    deinit { abort() }

    func abort() {
        if let processor { MHD_destroy_post_processor(processor) }
        processor = nil
        sink?.abort()
        sink = nil
    }

    func consume(_ chunk: UnsafeRawBufferPointer) {
        guard error == nil, !stopped, let processor, let base = chunk.baseAddress else { return }
        let accepted = MHD_post_process(processor, base.assumingMemoryBound(to: CChar.self), chunk.count)
        guard accepted == MHD_Result.NO, error == nil else { return }
        // The file part's data ends only at a boundary, so once it was opened a parse failure lies past its end.
        if sink != nil { stopped = true } else { error = .detail(400, "Malformed multipart body") }
    }

    /// The body is complete: commit the file, or say why not.
    func finish() -> UploadOutcome {
        if let processor {
            self.processor = nil
            if MHD_destroy_post_processor(processor) == MHD_Result.NO, error == nil, !stopped {
                error = .detail(400, "Malformed or truncated multipart body")
            }
        }
        defer { sink = nil }
        if let error {
            sink?.abort()
            return .failed(error)
        }
        guard let sink, let filename else { return .missingField }
        do {
            try sink.commit()
        } catch {
            sink.abort()
            return .failed(error)
        }
        return .stored(filename: filename)
    }

    /// One call of the post processor's iterator.
    ///
    /// libmicrohttpd calls it at least once per part (with no data if none is there yet) and then with each piece
    /// of the part's data at `offset`, the bytes already given; a call with no data comes only first in a part. So a
    /// part whose first piece came empty continues at offset 0, and offset 0 means a new part only once the file
    /// part has bytes. Parts named `field` that carry no bytes are passed over for a later one (whose filename
    /// then wins): whichever way the body is split into reads, the same bytes are stored.
    private func receive(key: String, filename: String?, data: UnsafeRawBufferPointer, offset: UInt64) -> MHD_Result {
        guard key == field, let filename else {
            if written > 0 { partClosed = true }
            return .YES
        }
        if written > 0 && (offset == 0 || offset != UInt64(written)) { partClosed = true }
        if partClosed { return .YES }
        do {
            if sink != nil, written == 0, filename != self.filename {
                sink?.abort()
                sink = nil
            }
            if sink == nil {
                sink = try open(filename)
                self.filename = filename
            }
            if !data.isEmpty {
                try sink?.write(data)
                written += data.count
            }
            return .YES
        } catch {
            self.error = error
            return .NO
        }
    }

    private static let iterator: MHD_PostDataIterator = { cls, _, key, filename, _, _, data, offset, size in
        guard let cls, let key else { return .NO }
        let receiver = Unmanaged<UploadReceiver>.fromOpaque(cls).takeUnretainedValue()
        let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
        return receiver.receive(
            key: String(cString: key), filename: filename.map { String(cString: $0) }, data: bytes, offset: offset)
    }
}
