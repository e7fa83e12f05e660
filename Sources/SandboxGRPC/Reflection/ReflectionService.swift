import FoundationEssentials
import GRPCCore
import GRPCProtobuf

/// gRPC server reflection (`grpc.reflection.v1`, and `v1alpha` for older clients), so `grpcurl list` and
/// `grpcurl describe` work without the .proto files. The two versions have the same messages on the wire, so one
/// handler, on v1's generated types, serves both method names.
struct ReflectionService: Grpc_Reflection_V1_ServerReflection.SimpleServiceProtocol {
    let index: DescriptorIndex

    static let v1alpha = MethodDescriptor(
        fullyQualifiedService: "grpc.reflection.v1alpha.ServerReflection", method: "ServerReflectionInfo")

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        for method in [Grpc_Reflection_V1_ServerReflection.Method.ServerReflectionInfo.descriptor, Self.v1alpha] {
            router.registerHandler(
                forMethod: method,
                deserializer: ProtobufDeserializer<Grpc_Reflection_V1_ServerReflectionRequest>(),
                serializer: ProtobufSerializer<Grpc_Reflection_V1_ServerReflectionResponse>(),
                handler: { request, context in
                    try await self.serverReflectionInfo(request: request, context: context)
                })
        }
    }

    func serverReflectionInfo(
        request: RPCAsyncSequence<Grpc_Reflection_V1_ServerReflectionRequest, any Error>,
        response: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>,
        context: ServerContext
    ) async throws {
        for try await question in request {
            try await response.write(answer(question))
        }
    }

    /// The answer to one request; unknown names and unsupported questions are answered with an error message (the
    /// stream goes on), as the protocol wants.
    func answer(_ question: Grpc_Reflection_V1_ServerReflectionRequest) -> Grpc_Reflection_V1_ServerReflectionResponse {
        var answer = Grpc_Reflection_V1_ServerReflectionResponse()
        answer.validHost = question.host
        answer.originalRequest = question
        switch question.messageRequest {
        case .listServices:
            answer.listServicesResponse.service = index.services.map { name in
                var service = Grpc_Reflection_V1_ServiceResponse()
                service.name = name
                return service
            }
        case .fileByFilename(let name):
            answer.messageResponse = Self.files(index.file(named: name), missing: "file '\(name)'")
        case .fileContainingSymbol(let symbol):
            answer.messageResponse = Self.files(index.file(declaring: symbol), missing: "symbol '\(symbol)'")
        case .fileContainingExtension(let request):
            answer.messageResponse = Self.error(
                .notFound, "no extension \(request.extensionNumber) of '\(request.containingType)' is served")
        case .allExtensionNumbersOfType(let type):
            answer.messageResponse = Self.error(.notFound, "no extensions of '\(type)' are served")
        case nil:
            answer.messageResponse = Self.error(.invalidArgument, "the request asks nothing")
        }
        return answer
    }

    private static func files(
        _ files: [Data]?, missing: String
    ) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
        guard let files else { return error(.notFound, "\(missing) is not served here") }
        var response = Grpc_Reflection_V1_FileDescriptorResponse()
        response.fileDescriptorProto = files
        return .fileDescriptorResponse(response)
    }

    private static func error(
        _ code: RPCError.Code, _ message: String
    ) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
        var error = Grpc_Reflection_V1_ErrorResponse()
        error.errorCode = Int32(code.rawValue)
        error.errorMessage = message
        return .errorResponse(error)
    }
}
