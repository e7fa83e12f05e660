/// The one upload sink of both APIs: a `FileTree.NewFile` behind the HTTP layer's `UploadSink`, with the API's own
/// mapping of file errors to answers.
final class NewFileSink: UploadSink {
    private let file: FileTree.NewFile
    private let failure: @Sendable (FileError) -> APIError

    init(file: FileTree.NewFile, failure: @escaping @Sendable (FileError) -> APIError) {
        self.file = file
        self.failure = failure
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(APIError) {
        do { try file.write(bytes) } catch { throw failure(error) }
    }

    func commit() throws(APIError) {
        do { try file.commit() } catch { throw failure(error) }
    }

    func abort() { file.abort() }
}
