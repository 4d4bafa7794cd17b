"""Builds quiver._capi, the compiled (cffi API mode) binding, from
include/quiver.h (see docs/python.md), in either of two ways:

- the C library's CMake build runs it when Debian's python3-cffi and
  python3-dev are there:

      /usr/bin/python3 python/quiver/_capi_build.py OUT_DIR INCLUDE_DIR

  writes OUT_DIR/quiver/_capi<EXT_SUFFIX>;
- python/setup.py names `ffibuilder` in cffi_modules (pip install), with
  this repository's include/ (or the directory QUIVER_INCLUDE names).

The module is not linked with libquiver: its calls resolve to the
libquiver.so.0 that _ffi.py loads first (RTLD_GLOBAL), the one QUIVER_LIB
names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

# _cdef sits beside this file, which is run as a script or by cffi's
# setuptools hook (neither puts it on sys.path as a package module)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _cdef import api_cdef  # noqa: E402  pylint: disable=wrong-import-position

# Helpers that do in one call what the package would otherwise do in two or
# three (each call out of Python costs more than the C it runs); _ffi.py has
# the same in Python for ABI mode.
HELPERS_CDEF = """
qv_future *qvpy_request(qv_session *s, const qv_request_opts *opts);
int qvpy_request_error(void);
void qvpy_fill(const qv_response *r, qvpy_taken *t);
int qvpy_take(qv_future *f, long timeout_ms, qvpy_taken *t);
int qvpy_wait_take(qv_future *ref, long timeout_ms, qvpy_taken *t);
"""
HELPERS_C = r"""
#include <string.h>

/* The code of this thread's last failed qvpy_request. */
static _Thread_local int qvpy_rc;

/* qv_request's future, or NULL (its code then from qvpy_request_error):
 * no out-parameter for Python to make or keep per thread, and read back. */
static qv_future *qvpy_request(qv_session *s, const qv_request_opts *opts)
{
    qv_future *f = NULL;
    int rc = qv_request(s, &f, opts);
    if (rc) {
        qvpy_rc = rc;
        return NULL;
    }
    return f;
}

static int qvpy_request_error(void)
{
    return qvpy_rc;
}

/* _cdef.py's, laid out as there (its cdef is open: the compiler's layout). */
typedef struct qvpy_taken {
    long long status, headers_len, body_len, body_at, history_len, strings_gen, reason_gen,
        url_gen, type_gen;
    double elapsed_ms;
    int http_version, attempts;
    qv_timing timing;
    qv_response *resp;
    char *buf;
    size_t cap;
    qv_response_info info;
    int last_state[3]; /* 0: none known (never the same), 1: NULL, 2: the string in last */
    char last[3][1024];
} qvpy_taken;

/* A body this small is copied after the headers: Python slices both out of
 * one buffer, which costs less than a conversion call of its own. */
#define QVPY_BODY_COPY 2048

/* Keeps s (NULL for none) as the last value of kind i, moving *gen when it
 * differs from the one kept (or none was: too long to keep). */
static void qvpy_keep(qvpy_taken *t, int i, const char *s, long long *gen)
{
    int state = s ? 2 : 1;
    if (t->last_state[i] == state && (!s || strcmp(t->last[i], s) == 0)) return;
    ++*gen;
    size_t n = s ? strlen(s) : 0;
    t->last_state[i] = n < sizeof t->last[i] ? state : 0;
    if (s && n < sizeof t->last[i]) memcpy(t->last[i], s, n + 1);
}

/* What Python reads of response r, into t. */
static void qvpy_fill(const qv_response *r, qvpy_taken *t)
{
    qv_response_info *info = &t->info;
    info->size = sizeof *info;
    qv_response_info_get(r, info, t->buf, t->cap);
    t->status = info->status;
    t->headers_len = (long long)info->headers_len;
    t->body_len = (long long)info->body_len;
    t->body_at = -1;
    if (info->headers_len <= t->cap && info->body_len <= QVPY_BODY_COPY &&
        info->body_len <= t->cap - info->headers_len) {
        if (info->body_len) memcpy(t->buf + info->headers_len, info->body, info->body_len);
        t->body_at = (long long)info->headers_len;
    }
    t->history_len = (long long)info->history_len;
    qvpy_keep(t, 0, info->reason, &t->reason_gen);
    qvpy_keep(t, 1, info->url, &t->url_gen);
    if (info->content_types > 1) {
        /* more than one: Python joins them all (as requests reads them) */
        t->last_state[2] = 0;
        t->type_gen++;
    } else {
        qvpy_keep(t, 2, info->content_type, &t->type_gen);
    }
    t->strings_gen = t->reason_gen + t->url_gen + t->type_gen;
    t->elapsed_ms = info->elapsed_ms;
    t->http_version = info->http_version;
    t->attempts = info->attempts;
    t->timing = info->timing;
}

/* A future's outcome once it is done (or QV_EWAIT_TIMEOUT) and, for a
 * response, t filled from it (t->resp). */
static int qvpy_take(qv_future *f, long timeout_ms, qvpy_taken *t)
{
    int rc = qv_future_result(f, &t->resp, timeout_ms);
    if (rc == QV_OK) qvpy_fill(t->resp, t);
    return rc;
}

/* qvpy_take, then releases `ref`, the caller's own reference (taken under
 * the lock that guards the reference it shares: t->resp is valid while that
 * one is held). */
static int qvpy_wait_take(qv_future *ref, long timeout_ms, qvpy_taken *t)
{
    int rc = qvpy_take(ref, timeout_ms, t);
    qv_future_release(ref);
    return rc;
}
"""


def make_ffi(include_dir: str) -> FFI:
    """The extension's builder, for the quiver.h in include_dir. Not the
    limited API: the module's name ends in the interpreter's own suffix,
    where _ffi.py looks for it."""
    ffi = FFI()
    ffi.cdef(api_cdef() + HELPERS_CDEF)
    ffi.set_source("quiver._capi", "#include <quiver.h>\n" + HELPERS_C, include_dirs=[include_dir],
                   extra_compile_args=["-O2"], py_limited_api=False)
    return ffi


def main(argv: list[str]) -> int:
    out_dir, include_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    make_ffi(include_dir).compile(tmpdir=out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
elif __name__ == "__cffi__":  # cffi_modules in setup.py
    ffibuilder = make_ffi(os.environ.get("QUIVER_INCLUDE")
                          or str(Path(__file__).resolve().parents[2] / "include"))
