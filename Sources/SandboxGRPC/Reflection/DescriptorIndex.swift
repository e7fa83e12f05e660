import FoundationEssentials
import SwiftProtobuf

/// The .proto files sandboxd serves, as reflection clients ask for them: by file name, and by the fully qualified name
/// of a symbol they declare (service, method, message, field, enum, enum value). Built once from the embedded
/// descriptor set.
struct DescriptorIndex: Sendable {
    /// Serialized `FileDescriptorProto` by file name.
    private let files: [String: Data]
    /// The files each file imports.
    private let imports: [String: [String]]
    /// The file declaring each symbol.
    private let declaringFile: [String: String]
    /// Every service of the set, fully qualified, sorted.
    let services: [String]

    init(descriptorSet: Google_Protobuf_FileDescriptorSet) throws {
        var files: [String: Data] = [:]
        var imports: [String: [String]] = [:]
        var declaringFile: [String: String] = [:]
        var services: [String] = []
        for file in descriptorSet.file {
            files[file.name] = try file.serializedBytes()
            imports[file.name] = file.dependency
            let scope = file.package.isEmpty ? "" : file.package + "."
            for service in file.service {
                let name = scope + service.name
                services.append(name)
                declaringFile[name] = file.name
                for method in service.method { declaringFile[name + "." + method.name] = file.name }
            }
            for message in file.messageType { Self.index(message, scope: scope, file: file.name, into: &declaringFile) }
            for enumeration in file.enumType {
                Self.index(enumeration, scope: scope, file: file.name, into: &declaringFile)
            }
        }
        self.files = files
        self.imports = imports
        self.declaringFile = declaringFile
        self.services = services.sorted()
    }

    /// The embedded descriptor set of sandboxd's services.
    static func embedded() throws -> DescriptorIndex {
        guard let bytes = Data(base64Encoded: DescriptorSet.base64, options: .ignoreUnknownCharacters) else {
            throw DescriptorSetError()
        }
        return try DescriptorIndex(descriptorSet: Google_Protobuf_FileDescriptorSet(serializedBytes: bytes))
    }

    struct DescriptorSetError: Error {}

    /// The file named `name` and every file it imports, directly or not, the named file first; nil if unknown.
    func file(named name: String) -> [Data]? {
        guard files[name] != nil else { return nil }
        var order: [String] = []
        var pending = [name]
        while let next = pending.popLast() {
            guard !order.contains(next), files[next] != nil else { continue }
            order.append(next)
            pending += (imports[next] ?? []).reversed()
        }
        return order.compactMap { files[$0] }
    }

    /// The file that declares `symbol` (with its imports, as `file(named:)`); nil if no file does.
    func file(declaring symbol: String) -> [Data]? {
        declaringFile[symbol].flatMap { file(named: $0) }
    }

    private static func index(
        _ message: Google_Protobuf_DescriptorProto, scope: String, file: String, into symbols: inout [String: String]
    ) {
        let name = scope + message.name
        symbols[name] = file
        for field in message.field { symbols[name + "." + field.name] = file }
        for nested in message.nestedType { index(nested, scope: name + ".", file: file, into: &symbols) }
        for enumeration in message.enumType { index(enumeration, scope: name + ".", file: file, into: &symbols) }
    }

    /// An enum's values are declared in the scope that holds the enum, as in C++.
    private static func index(
        _ enumeration: Google_Protobuf_EnumDescriptorProto, scope: String, file: String,
        into symbols: inout [String: String]
    ) {
        symbols[scope + enumeration.name] = file
        for value in enumeration.value { symbols[scope + value.name] = file }
    }
}
