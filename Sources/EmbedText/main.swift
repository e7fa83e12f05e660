// Writes a Swift source file that holds a text file's contents as a string constant, so that a data file is
// compiled into the binary (no resource bundle, nothing read at run time).
//
//     EmbedText <input> <output> <Type> <property>
//
// writes `extension <Type> { static let <property> = <the input, verbatim> }`. Run by the EmbedOpenAPI build-tool
// plugin; plain libc, so that it builds in seconds on a fresh clone.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

func fail(_ message: String) -> Never {
    let line = Array("EmbedText: \(message)\n".utf8)
    _ = write(2, line, line.count)
    exit(1)
}

func readFile(_ path: String) -> [UInt8] {
    guard let file = fopen(path, "rb") else { fail("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        bytes += chunk[..<count]
        if count < chunk.count { break }
    }
    guard ferror(file) == 0 else { fail("cannot read \(path)") }
    return bytes
}

func writeFile(_ text: String, to path: String) {
    guard let file = fopen(path, "wb") else { fail("cannot create \(path): \(String(cString: strerror(errno)))") }
    let bytes = Array(text.utf8)
    let written = fwrite(bytes, 1, bytes.count, file)
    guard fclose(file) == 0, written == bytes.count else { fail("cannot write \(path)") }
}

let arguments = CommandLine.arguments
guard arguments.count == 5 else { fail("usage: EmbedText <input> <output> <Type> <property>") }
let (input, output, type, property) = (arguments[1], arguments[2], arguments[3], arguments[4])
let bytes = readFile(input)
// A multi-line string literal turns CR LF and CR into LF, so such a file would not come out as it went in.
guard !bytes.contains(UInt8(ascii: "\r")) else { fail("\(input) holds a carriage return; use LF line endings") }
guard let text = String(validating: bytes, as: UTF8.self) else { fail("\(input) is not UTF-8") }

// A raw string literal whose delimiter has one more `#` than the longest run of `#` in the text: then neither its
// closing `"""#…` nor an escape `\#…` can occur in the text, and every byte stands for itself.
var longestRun = 0
var run = 0
for byte in bytes {
    run = byte == UInt8(ascii: "#") ? run + 1 : 0
    longestRun = max(longestRun, run)
}
let hashes = String(repeating: "#", count: longestRun + 1)
// The closing delimiter at column 0 keeps every line's indentation; the newlines right after the opening and right
// before the closing delimiter are not part of the string.
writeFile(
    """
    // Generated at build time by the EmbedOpenAPI plugin from \(input.split(separator: "/").last ?? ""): edit that file, not this one.
    extension \(type) {
        static let \(property) = \(hashes)\"""
    \(text)
    \"""\(hashes)
    }

    """, to: output)
