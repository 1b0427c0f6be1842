"""A real HTTP server on 127.0.0.1 that serves files well or misbehaves on purpose.

Each route is a ``Route`` whose ``behaviour`` says how to misbehave; counters let a test
see how many requests arrived and with which Range headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOGIN_PAGE = b"""<!DOCTYPE html><html><head><title>Sign in - Example Storage</title></head>
<body><form action="/login"><p>Log in required to download this file.</p>
<input name="user"></form></body></html>"""

QUOTA_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body><p>Sorry, you can't view or download this file at this time.</p><p>Too many users have
viewed or downloaded this file recently. Please try accessing the file again later.</p>
</body></html>"""

DRIVE_PERMISSION_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive</title></head>
<body><h1>You need access</h1><p>Ask for access, or switch to an account with access.</p>
<a href="https://accounts.google.com/ServiceLogin">Switch account</a></body></html>"""


def drive_confirmation_page(file_id: str) -> bytes:
    """The shape of Drive's 'cannot scan this file for viruses' page (form, hidden inputs)."""
    return f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/drive/download" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="5b7c-11aa">
</form></body></html>""".encode()


@dataclass
class Route:
    data: bytes = b""
    behaviour: str = "good"
    # truncate: announce len(data) but stop after `cut` bytes on the first `times` requests
    # drop: as truncate, but for every request until `times` is used up
    # stall: announce len(data), send `cut` bytes, then nothing until the server stops
    # trickle: announce len(data), then one byte every `interval` seconds
    # overlong: announce len(data), then send the data and as many bytes again
    # endless: no Content-Length, and bytes until the client goes away
    # redirect: 302 to the URL held in `data`
    cut: int = 0
    times: int = 1
    interval: float = 1.0
    content_type: str = "application/octet-stream"
    # how the server names the file's version, and whether it keeps If-Range
    send_etag: bool = True
    fixed_etag: str | None = None  # an ETag that stays the same whatever the data
    last_modified: str | None = None  # an HTTP date, sent as Last-Modified
    if_range: str = "honour"  # "ignore": a Range is answered with 206 whatever If-Range says
    requests: int = 0
    ranges: list[str | None] = field(default_factory=list)
    if_ranges: list[str | None] = field(default_factory=list)

    @property
    def etag(self) -> str:
        if self.fixed_etag is not None:
            return self.fixed_etag
        return '"' + hashlib.md5(self.data).hexdigest()[:16] + '"'

    def same_version(self, if_range: str | None) -> bool:
        """Whether an If-Range header names the version served now (RFC 9110 13.1.5)."""
        if if_range is None or self.if_range == "ignore":
            return True
        if self.send_etag and if_range == self.etag:
            return True
        return self.last_modified is not None and if_range == self.last_modified


class _Handler(BaseHTTPRequestHandler):
    server: MisbehavingServer

    def log_message(self, format: str, *args: object) -> None:  # quiet tests
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        if route is None:
            self._send_status(404)
            return
        with self.server.lock:
            route.requests += 1
            route.ranges.append(self.headers.get("Range"))
            count = route.requests
        behaviour = route.behaviour
        if behaviour == "forbidden":
            self._send_status(403)
        elif behaviour == "redirect":  # the route's data is the URL to go to
            self.send_response(302)
            self.send_header("Location", route.data.decode())
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif behaviour == "flaky" and count <= route.times:
            self._send_status(500)
        elif behaviour == "html":
            self._send_body(LOGIN_PAGE, "text/html; charset=utf-8")
        elif behaviour == "html-as-binary":
            self._send_body(LOGIN_PAGE, "application/octet-stream")
        elif behaviour == "quota":
            self._send_body(QUOTA_PAGE, "text/html")
        elif behaviour == "drive-permission":
            self._send_body(DRIVE_PERMISSION_PAGE, "text/html")
        elif behaviour == "drive-confirm":
            query = parse_qs(parts.query)
            self._send_body(drive_confirmation_page(query.get("id", ["x"])[0]), "text/html")
        else:
            self._serve_file(route, count)

    def _serve_file(self, route: Route, count: int) -> None:
        data = route.data
        start = 0
        ranged = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        with self.server.lock:
            route.if_ranges.append(if_range)
        honour = route.behaviour != "no-ranges" and ranged and route.same_version(if_range)
        if honour and ranged.startswith("bytes=") and ranged.endswith("-"):
            start = int(ranged[len("bytes=") : -1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self._send_version(route)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", route.content_type)
        if route.behaviour != "endless":
            self.send_header("Content-Length", str(len(body)))
        self._send_version(route)
        if route.behaviour != "no-ranges":
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        # the client may give up first, as it should with a server that misbehaves
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send_file_body(route, body, start, count)

    def _send_version(self, route: Route) -> None:
        if route.send_etag:
            self.send_header("ETag", route.etag)
        if route.last_modified is not None:
            self.send_header("Last-Modified", route.last_modified)

    def _send_file_body(self, route: Route, body: bytes, start: int, count: int) -> None:
        cut_now = route.behaviour in ("truncate", "drop") and count <= route.times
        if cut_now:
            self.wfile.write(body[: max(0, route.cut - start)])
            self.wfile.flush()
            self.close_connection = True
            if route.behaviour == "drop":  # abort with a reset instead of a clean close
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            return
        if route.behaviour == "slow":  # a large download that takes a while
            for offset in range(0, len(body), 64 * 1024):
                self.wfile.write(body[offset : offset + 64 * 1024])
                time.sleep(0.01)
            return
        if route.behaviour == "stall":
            self.wfile.write(body[: route.cut])
            self.wfile.flush()
            self.server.stopping.wait()
            return
        if route.behaviour == "trickle":
            for offset in range(len(body)):
                self.wfile.write(body[offset : offset + 1])
                self.wfile.flush()
                if self.server.stopping.wait(route.interval):
                    return
            return
        if route.behaviour == "overlong":
            self.wfile.write(body + random.Random(len(body)).randbytes(len(body) or 1))
            self.close_connection = True
            return
        if route.behaviour == "endless":
            self.close_connection = True
            block = body or b"x" * 65536
            while not self.server.stopping.is_set():
                self.wfile.write(block)
            return
        self.wfile.write(body)

    def _send_status(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_body(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MisbehavingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # wakes the handlers that stall on purpose
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> MisbehavingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)


def s3_environment(server: MisbehavingServer) -> dict[str, str]:
    """Variables that make boto-based clients take ``server`` for an S3 endpoint: a GET of
    ``s3://bucket/key`` asks it for ``/bucket/key`` (it ignores If-Match and signatures)."""
    return {
        "AWS_ENDPOINT_URL_S3": server.url(""),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
