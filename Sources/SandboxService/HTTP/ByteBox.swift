/// An immutable byte array whose storage libmicrohttpd reads while sending a response.
final class ByteBox {
    private let bytes: [UInt8]
    /// The storage's address: stable, because the array is never mutated and lives as long as the box.
    let base: UnsafeMutableRawPointer?

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        base = bytes.withUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
    }
}
