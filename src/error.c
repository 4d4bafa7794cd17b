/* The error table: one list of code, name and message, and the mapping from
 * libcurl's codes to quiver's requests-like kinds. */
#include "internal.h"

#include <stdio.h>

static const struct {
    int code;
    const char *name;
    const char *message;
} errors[] = {
    {QV_OK, "QV_OK", "success"},
    {QV_EINVAL, "QV_EINVAL", "invalid argument"},
    {QV_ENOMEM, "QV_ENOMEM", "out of memory"},
    {QV_EURL, "QV_EURL", "invalid or unsupported URL"},
    {QV_ECONNECT, "QV_ECONNECT", "connection failed"},
    {QV_ECONNECT_TIMEOUT, "QV_ECONNECT_TIMEOUT", "connect timed out"},
    {QV_EREAD_TIMEOUT, "QV_EREAD_TIMEOUT", "read timed out (no data received)"},
    {QV_ETIMEOUT, "QV_ETIMEOUT", "request timed out"},
    {QV_ETLS, "QV_ETLS", "TLS error"},
    {QV_EPROXY, "QV_EPROXY", "proxy error"},
    {QV_EREDIRECTS, "QV_EREDIRECTS", "too many redirects"},
    {QV_EPROTOCOL, "QV_EPROTOCOL", "malformed or truncated response"},
    {QV_ETOO_LARGE, "QV_ETOO_LARGE", "response too large"},
    {QV_EDECODE, "QV_EDECODE", "content decoding failed"},
    {QV_EJSON, "QV_EJSON", "invalid JSON"},
    {QV_EHTTP, "QV_EHTTP", "HTTP error status"},
    {QV_ECANCELLED, "QV_ECANCELLED", "cancelled"},
    {QV_ESHUTDOWN, "QV_ESHUTDOWN", "session or executor closed"},
    {QV_EWORKER, "QV_EWORKER", "worker died"},
    {QV_EHOOK, "QV_EHOOK", "hook failed"},
    {QV_EWAIT_TIMEOUT, "QV_EWAIT_TIMEOUT", "wait timed out"},
    {QV_EIO, "QV_EIO", "local I/O error"},
    {QV_ETRANSFER, "QV_ETRANSFER", "transfer failed"},
    {QV_EAGAIN, "QV_EAGAIN", "queue full, try again"},
};

_Static_assert(sizeof(errors) / sizeof(errors[0]) == QV_ERROR_COUNT_,
               "every error code has one row in the table");

const char *qv_strerror(int code)
{
    if (code < 0 || code >= QV_ERROR_COUNT_) return "unknown error";
    return errors[code].message;
}

const char *qv_errname(int code)
{
    if (code < 0 || code >= QV_ERROR_COUNT_) return "QV_E?";
    return errors[code].name;
}

int qv_error_from_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return QV_OK;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return QV_EURL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_INTERFACE_FAILED: /* .interface: no such device or address here */
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        return QV_ECONNECT;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PROXY:
        return QV_EPROXY;
    case CURLE_OPERATION_TIMEDOUT:
        return QV_ETIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return QV_ETLS;
    case CURLE_TOO_MANY_REDIRECTS:
        return QV_EREDIRECTS;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_RANGE_ERROR:
        return QV_EPROTOCOL;
    case CURLE_FILESIZE_EXCEEDED:
        return QV_ETOO_LARGE;
    case CURLE_BAD_CONTENT_ENCODING:
        return QV_EDECODE;
    case CURLE_READ_ERROR:
    case CURLE_FILE_COULDNT_READ_FILE:
        return QV_EIO;
    case CURLE_OUT_OF_MEMORY:
        return QV_ENOMEM;
    default:
        return QV_ETRANSFER;
    }
}

static _Thread_local char last_error[512];

const char *qv_last_error(void)
{
    return last_error;
}

void qv_set_last_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}
