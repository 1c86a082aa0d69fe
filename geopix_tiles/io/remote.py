"""Scenes behind HTTP(S) or object stores, read with GDAL's windowed range requests.

``https://host/scene.tif`` becomes ``/vsicurl/https://host/scene.tif``, ``s3://bucket/key``
``/vsis3/bucket/key`` (``gs://`` ``/vsigs/``, ``az://`` ``/vsiaz/``); ``/vsi...`` paths pass
through. The engine then reads only the byte ranges of the blocks it needs. GDAL's HTTP
behaviour is set once per process (``setdefault``: a user's own GDAL_* settings win):
retries with back-off for transient failures (503, resets), bounded timeouts, no directory
listing on open, and a bounded in-memory block cache. Errors a user can act on (404, 403,
timeouts, refused connections) come back as one line naming the problem.
"""
from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["is_remote", "gdal_path", "configure_gdal_http", "remote_fingerprint", "remote_change", "remote_error",
           "HTTP_OPTIONS"]

_SCHEMES = {"http://": "/vsicurl/", "https://": "/vsicurl/", "s3://": "/vsis3/", "gs://": "/vsigs/",
            "az://": "/vsiaz/"}

#: GDAL configuration for remote reads (only set when the user has not set them)
HTTP_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the folder of a COG: one request saved
    "GDAL_HTTP_MAX_RETRY": "5",  # transient 429/502/503/504 and resets: retried with back-off
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "CPL_VSIL_CURL_CACHE_SIZE": str(64 * 1024 * 1024),  # bounded: a scene is not held in memory
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt,.ovr,.jp2,.json",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
}


def is_remote(path: Any) -> bool:
    s = str(path)
    return s.startswith(tuple(_SCHEMES)) or s.startswith(tuple(_SCHEMES.values()))


def gdal_path(path: Any) -> str:
    """The path GDAL opens: URL schemes mapped onto their ``/vsi`` handlers, everything else as given."""
    s = str(path)
    for scheme, vsi in _SCHEMES.items():
        if s.startswith(scheme):
            return vsi + (s if vsi == "/vsicurl/" else s[len(scheme):])
    return s


def configure_gdal_http() -> None:
    """Set :data:`HTTP_OPTIONS` process-wide (environment), so every reader thread sees them."""
    for key, value in HTTP_OPTIONS.items():
        os.environ.setdefault(key, value)


def _url(path: str) -> str | None:
    s = str(path)
    if s.startswith(("http://", "https://")):
        return s
    if s.startswith("/vsicurl/"):
        return s[len("/vsicurl/"):]
    return None


def remote_fingerprint(path: Any, timeout: float = 10.0) -> dict[str, Any]:
    """What identifies the remote file for ``--resume``: size and validators of an HTTP HEAD.

    A resumed run must read the same bytes; if the server's file changed (new size, ETag or
    Last-Modified), the journal no longer matches and the run starts again. Object-store
    paths, which need credentials to HEAD, are identified by their path only.
    """
    url = _url(str(path))
    if url is None:
        return {"path": str(path)}
    import urllib.request  # noqa: PLC0415

    from ..errors import InputError  # noqa: PLC0415

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as resp:
            headers = resp.headers
            return {"path": url, "size": headers.get("Content-Length"), "etag": headers.get("ETag"),
                    "last_modified": headers.get("Last-Modified")}
    except Exception as exc:  # urllib raises HTTPError, URLError, timeouts, resets
        raise InputError(remote_error(url, exc)) from None


def remote_change(path: Any, expected: dict[str, Any], timeout: float = 10.0) -> str | None:
    """A one-line error if the server's file is no longer the one ``expected`` describes, else None.

    Checked by the reader after every strip (before its pixels are used), so a file replaced on
    the server mid-run stops the run instead of mixing two versions in one output. A HEAD that
    fails says nothing (the range reads' own retries deal with outages); only a definite change
    of size, ETag or Last-Modified counts.
    """
    if expected.get("size") is None and expected.get("etag") is None and expected.get("last_modified") is None:
        return None
    try:
        now = remote_fingerprint(path, timeout)
    except Exception:  # noqa: BLE001 - unreachable now: not evidence of a change
        return None
    diffs = [f"{k} {expected.get(k)} -> {now.get(k)}" for k in ("size", "etag", "last_modified")
             if expected.get(k) is not None and now.get(k) != expected.get(k)]
    if not diffs:
        return None
    return (f"scene '{now.get('path', path)}' changed on the server during the run ({'; '.join(diffs)}); the "
            "outputs would mix two versions of it: nothing was written, rerun the command (without --resume)")


def remote_error(path: str, exc: BaseException, during_run: bool = False) -> str:
    """One line for a failed remote open/read: what went wrong and what to do."""
    path = _url(str(path)) or str(path)
    text = " ".join(str(exc).split()).replace("/vsicurl/", "")
    code = getattr(exc, "code", None)
    if code is None:
        m = re.search(r"HTTP (?:response )?code:? ?(\d{3})", text) or re.search(r"\b(40[134]|5\d\d)\b", text)
        code = int(m.group(1)) if m else None
    if code == 404:
        return f"scene '{path}' was not found on the server (HTTP 404); check the URL"
    if code in (401, 403):
        return (f"access to scene '{path}' was denied (HTTP {code}); check the URL's permissions or credentials "
                "(e.g. AWS_ACCESS_KEY_ID / AWS_NO_SIGN_REQUEST for s3://)")
    if code is not None and code >= 500:
        return f"the server of '{path}' failed (HTTP {code}) after {HTTP_OPTIONS['GDAL_HTTP_MAX_RETRY']} retries; " \
               "try again later (rerun with --resume to continue a run)"
    if re.search(r"timed? ?out", text, re.IGNORECASE):
        return f"reading '{path}' timed out; check the network, or raise GDAL_HTTP_TIMEOUT"
    if re.search(r"refused|could not connect|couldn't connect|resolve host|connection reset|recv failure", text,
                 re.IGNORECASE):
        return f"could not reach the server of '{path}' ({text[:120]}); check the URL and the network"
    if during_run:
        return (f"reading '{path}' failed mid-run after retries ({text[:120]}); the server stopped answering: when "
                "it is back, rerun the same command with --resume to finish")
    return f"reading '{path}' failed ({text[:160]}); check the URL and that it serves a GeoTIFF"
