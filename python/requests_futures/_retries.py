"""An HTTPAdapter's urllib3 Retry as quiver's retry policy (qv_retry), when
quiver can retry exactly what urllib3 would; otherwise None, and the
request takes requests' own path (see docs/python.md, "Retries").

What urllib3 1.26 does for requests (HTTPAdapter.send: urlopen with
redirect=False, so its redirect count never moves), and how it maps:

- a connection failure (refused, unreachable, connect timeout) counts
  against `connect` for every method: QV_RETRY_CONNECT;
- a read timeout or a broken response (ProtocolError), only for
  `allowed_methods` and unless `read` is False: QV_RETRY_READ_TIMEOUT |
  QV_RETRY_PROTOCOL; once they are used up requests raises ConnectionError
  (MaxRetryError), not ReadTimeout;
- a status in `status_forcelist`, only for `allowed_methods`, counts against
  `status`: QV_RETRY_STATUS with those statuses; used up, requests raises
  RetryError (unless raise_on_status=False: the last response);
- with `total` set and respect_retry_after_header, 413, 429 and 503 are
  retried too, but only when the response has Retry-After:
  QV_RETRY_AFTER_STATUS; used up, the last response when `total` ran out
  (urllib3 asks total for these before it counts), else RetryError;
- every count also counts against `total`; quiver has one count, exact when
  `total` binds first (every other count used is None or at least `total`)
  or only one kind of failure is retried.

The wait (backoff_factor) is quiver's: backoff_factor seconds doubled each
retry, with jitter, where urllib3 waits nothing before the first retry and
backoff_factor * 2**(n-1) after; Retry-After is honoured either way.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

from urllib3.util.retry import Retry

from quiver._ffi import ffi

(QV_RETRY_CONNECT, QV_RETRY_READ_TIMEOUT, QV_RETRY_STATUS, QV_RETRY_PROTOCOL,
 QV_RETRY_AFTER_STATUS) = 1, 2, 4, 8, 16
_RETRY_AFTER_STATUSES = frozenset(Retry.RETRY_AFTER_STATUS_CODES)
_MAX_WAIT_MS = 86_400_000  # a Retry-After up to a day is waited for (urllib3 waits any)


class RetryPlan:
    """One Retry for one method: the qv_retry to send with (NULL: none),
    and what finishing needs to raise as requests would."""

    __slots__ = ("c_retry", "keep", "read_retried", "statuses", "after_statuses",
                 "max_retries")

    def __init__(self, retry: Retry, on: int, max_retries: int) -> None:
        # urllib3 retries a Retry-After status only while `total` is left: when
        # total runs out, the last such response is the outcome; when a
        # smaller `status` count does, RetryError.
        total_binds = retry.status is None or not retry.total or retry.status >= retry.total
        self.keep: list = []
        self.max_retries = max_retries
        self.read_retried = bool(on & QV_RETRY_READ_TIMEOUT)
        # a final response with one of these (of the second, with Retry-After),
        # retries used up: RetryError
        raising = retry.raise_on_status
        self.statuses = frozenset(retry.status_forcelist or ()) \
            if on & QV_RETRY_STATUS and raising else frozenset()
        self.after_statuses = _RETRY_AFTER_STATUSES - self.statuses \
            if on & QV_RETRY_AFTER_STATUS and raising and not total_binds else frozenset()
        if not on or not max_retries:
            self.c_retry = ffi.NULL
            return
        c = ffi.new("qv_retry *", {
            "max_retries": max_retries, "on": on, "all_methods": 1,
            "backoff_ms": max(1, round(retry.backoff_factor * 1000)),
            "max_backoff_ms": _MAX_WAIT_MS,
            "no_retry_after": 0 if retry.respect_retry_after_header else 1})
        if on & QV_RETRY_STATUS:
            statuses = ffi.new("int[]", sorted(retry.status_forcelist) + [0])
            c.statuses = statuses
            self.keep.append(statuses)
        self.c_retry = c


def _count(total: Optional[int], kinds: dict) -> Optional[int]:
    """quiver's one count for urllib3's, or None if it cannot be one."""
    if total is not None and all(c is None or c >= total for c in kinds.values()):
        return total
    if len(kinds) == 1:
        counts = [c for c in (total, *kinds.values()) if c is not None]
        return min(counts) if counts else None  # no count at all: forever
    return None


def _plan(retry: Any, method: str) -> Optional[RetryPlan]:
    if type(retry) is not Retry or retry.history or retry.total is False or \
            "method_whitelist" in retry.__dict__:
        return None  # a subclass, a used Retry, "re-raise", a deprecated form
    allowed = not retry.allowed_methods or method in retry.allowed_methods
    forcelist = frozenset(retry.status_forcelist or ())
    retry_after = bool(retry.total) and retry.respect_retry_after_header
    kinds: dict = {}
    if retry.connect != 0:
        kinds[QV_RETRY_CONNECT] = retry.connect
    if allowed and retry.read is not False and retry.read != 0:
        kinds[QV_RETRY_READ_TIMEOUT | QV_RETRY_PROTOCOL] = retry.read
    if allowed and retry.status != 0 and (forcelist or retry_after):
        kinds[(QV_RETRY_STATUS if forcelist else 0) |
              (QV_RETRY_AFTER_STATUS if retry_after else 0)] = retry.status
    if not kinds:
        return RetryPlan(retry, 0, 0)
    n = _count(retry.total, kinds)
    if n is None or n < 0:
        return None
    return RetryPlan(retry, sum(kinds), n)


_plans: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def retry_plan(retry: Any, method: str) -> Optional[RetryPlan]:
    """The plan for an adapter's max_retries and a method, remembered per
    Retry object (they are not changed once made: Retry.new copies)."""
    try:
        per_method = _plans.get(retry)
    except TypeError:  # not weakly referenceable: not a Retry
        return None
    if per_method is None:
        per_method = _plans[retry] = {}
    if method not in per_method:
        per_method[method] = _plan(retry, method)
    return per_method[method]
