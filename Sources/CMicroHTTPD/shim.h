// Swift cannot call C variadic functions, and libmicrohttpd configures its daemon and reads its state
// through them; these fixed-argument wrappers are the only C sandboxd needs. Everything else is called from Swift.
#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H

#include <stdint.h>
#include <sys/socket.h>
#include <microhttpd.h>

/// `MHD_OPTION_UNESCAPE_CALLBACK`'s function type, which microhttpd.h does not name: decodes `string` in place and
/// returns its new length.
typedef size_t (*CMicroHTTPD_UnescapeCallback)(void *_Nullable context, struct MHD_Connection *_Nullable connection,
                                               char *_Nullable string);

/// `MHD_OPTION_URI_LOG_CALLBACK`'s function type, which microhttpd.h does not name: sees the request target before
/// libmicrohttpd splits it into path and query; the pointer it returns becomes the request's `*req_cls`.
typedef void *_Nullable (*CMicroHTTPD_URILogCallback)(void *_Nullable context, const char *_Nullable uri,
                                                      struct MHD_Connection *_Nullable connection);

/// Starts a daemon with the options sandboxd uses (`MHD_start_daemon`).
/// `address` may be NULL to listen on every address of the family the flags select.
static inline struct MHD_Daemon *_Nullable CMicroHTTPD_start_daemon(
    unsigned int flags, uint16_t port, const struct sockaddr *_Nullable address,
    MHD_AccessHandlerCallback _Nonnull handler, void *_Nullable handlerContext,
    MHD_RequestCompletedCallback _Nonnull completed, void *_Nullable completedContext,
    CMicroHTTPD_UnescapeCallback _Nonnull unescape, CMicroHTTPD_URILogCallback _Nonnull noteTarget,
    MHD_LogCallback _Nonnull logger, void *_Nullable loggerContext,
    MHD_AcceptPolicyCallback _Nonnull accept, MHD_NotifyConnectionCallback _Nonnull notifyConnection,
    void *_Nullable connectionContext,
    unsigned int threadPoolSize, unsigned int connectionLimit, unsigned int connectionTimeoutSeconds,
    size_t connectionMemoryLimit) {
    struct MHD_OptionItem options[] = {
        // First, so that libmicrohttpd's messages about the options themselves go to it too.
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)logger, loggerContext},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, completedContext},
        {MHD_OPTION_THREAD_POOL_SIZE, threadPoolSize, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, connectionLimit, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, connectionTimeoutSeconds, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, connectionMemoryLimit, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notifyConnection, connectionContext},
        {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)noteTarget, NULL},
        {MHD_OPTION_SOCK_ADDR, 0, (void *)address},
        {MHD_OPTION_END, 0, NULL},
    };
    if (address == NULL) {
        options[9].option = MHD_OPTION_END;
    }
    return MHD_start_daemon(flags, port, accept, connectionContext, handler, handlerContext, MHD_OPTION_ARRAY, options,
                            MHD_OPTION_END);
}

/// The port the daemon is bound to (`MHD_get_daemon_info` with `MHD_DAEMON_INFO_BIND_PORT`); 0 if unknown.
static inline uint16_t CMicroHTTPD_bound_port(struct MHD_Daemon *_Nonnull daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

/// The socket of a connection (`MHD_get_connection_info` with `MHD_CONNECTION_INFO_CONNECTION_FD`); -1 if unknown.
static inline int CMicroHTTPD_connection_fd(struct MHD_Connection *_Nonnull connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

#endif
