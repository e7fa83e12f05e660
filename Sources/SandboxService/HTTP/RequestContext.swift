/// Per-request state, owned by libmicrohttpd's `*req_cls`: retained on the first access-handler call and released
/// once in the completion callback. Only the connection's polling thread touches it.
final class RequestContext {
    var machine = RequestMachine()
}
