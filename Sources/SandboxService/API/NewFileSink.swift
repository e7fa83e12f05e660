/// The one upload sink of both APIs: the core's `Sandbox.NewFile` behind the HTTP layer's `UploadSink`, with the API's
/// own mapping of core errors to answers.
final class NewFileSink: UploadSink {
    private let file: Sandbox.NewFile
    private let failure: @Sendable (SandboxError) -> APIError

    init(file: Sandbox.NewFile, failure: @escaping @Sendable (SandboxError) -> APIError) {
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
