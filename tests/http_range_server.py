"""A loopback HTTP server with Range support and switchable faults, for remote-read tests.

Serves files of one folder on 127.0.0.1 only. ``fail_every=N`` answers every N-th GET with
503 (a transient fault GDAL must retry through); ``die_after=N`` drops every connection after
N GETs without an answer (a server that died mid-run) until ``revive()``.
"""
from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class RangeServer:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.fail_every = 0
        self.die_after = 0
        self.gets = 0
        self.range_gets = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _file(self):
                path = server.root / self.path.lstrip("/").split("?")[0]
                return path if path.is_file() else None

            def do_HEAD(self):
                f = self._file()
                if f is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(f.stat().st_size))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{f.stat().st_mtime_ns}-{f.stat().st_size}"')
                self.end_headers()

            def do_GET(self):
                with server._lock:
                    server.gets += 1
                    n = server.gets
                if server.die_after and n > server.die_after:
                    self.close_connection = True
                    self.connection.shutdown(2)  # no answer at all: like a dead server
                    return
                if server.fail_every and n % server.fail_every == 0:
                    self.send_error(503, "try again")
                    return
                f = self._file()
                if f is None:
                    self.send_error(404)
                    return
                data = f.read_bytes()
                size = len(data)
                header = self.headers.get("Range")
                if not header:
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.send_header("Accept-Ranges", "bytes")
                    self.end_headers()
                    self.wfile.write(data)
                    return
                with server._lock:
                    server.range_gets += 1
                spans = []
                for a, b in re.findall(r"(\d*)-(\d*)", header.split("=", 1)[1]):
                    start = int(a) if a else size - int(b)
                    end = min(int(b), size - 1) if a and b else size - 1
                    spans.append((start, end))
                if len(spans) == 1:
                    start, end = spans[0]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                    self.send_header("Content-Length", str(end - start + 1))
                    self.end_headers()
                    self.wfile.write(data[start:end + 1])
                    return
                boundary = "geopixboundary"
                body = b""
                for start, end in spans:
                    body += (f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                             f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n").encode() + data[start:end + 1] + b"\r\n"
                body += f"--{boundary}--\r\n".encode()
                self.send_response(206)
                self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def revive(self) -> None:
        self.die_after = 0

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
