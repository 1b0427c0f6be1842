"""What a client without credentials can get from a server's ports: plain HTTP/1.1 requests,
and real gRPC calls over HTTP/2, in clear text or over TLS with or without a client
certificate. No library beyond the standard one, so that nothing hides a refusal."""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

import psutil

TIMEOUT = 5.0
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4


@dataclass(frozen=True)
class Listeners:
    """What a process (and its children) listens on."""

    tcp: list[tuple[str, int]]
    udp: list[tuple[str, int]]
    unix: list[str]


def listeners(pid: int) -> Listeners:
    """Every listening socket of ``pid`` and its children, read from the kernel's tables."""
    root = psutil.Process(pid)
    tcp: set[tuple[str, int]] = set()
    udp: set[tuple[str, int]] = set()
    unix: set[str] = set()
    for process in [root, *root.children(recursive=True)]:
        for connection in process.net_connections(kind="all"):
            if connection.type == socket.SOCK_STREAM and connection.family != socket.AF_UNIX:
                if connection.status == psutil.CONN_LISTEN:
                    tcp.add((connection.laddr.ip, connection.laddr.port))
            elif connection.type == socket.SOCK_DGRAM and connection.family != socket.AF_UNIX:
                udp.add((connection.laddr.ip, connection.laddr.port))
            elif connection.family == socket.AF_UNIX and connection.laddr:
                unix.add(str(connection.laddr))
    return Listeners(sorted(tcp), sorted(udp), sorted(unix))


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int | None, bytes]:
    """An HTTP/1.1 request to 127.0.0.1:port; (status, body), or (None, b"") when the port
    refused the connection or did not answer in HTTP."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        connection.close()


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A form upload of one file, as SeaweedFS's HTTP servers take writes."""
    boundary = "vcat-probe-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def grpc_call(
    port: int,
    method: str,
    message: bytes,
    tls: bool = False,
    certificate: tuple[Path, Path] | None = None,
) -> bytes | None:
    """Call gRPC ``method`` (``/package.Service/Method``) with a serialized request.

    Returns the response's DATA bytes (gRPC-framed messages; empty when the server answered
    without data, e.g. an error status), or None when the port refused the connection, the
    TLS handshake or HTTP/2.
    """
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except OSError:
        return None
    stream: socket.socket = raw
    try:
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            if certificate is not None:
                context.load_cert_chain(*(str(part) for part in certificate))
            stream = context.wrap_socket(raw)
        headers = b"".join(
            _literal(name, value)
            for name, value in (
                (":method", "POST"),
                (":scheme", "https" if tls else "http"),
                (":path", method),
                (":authority", f"127.0.0.1:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            )
        )
        framed = b"\x00" + struct.pack(">I", len(message)) + message
        stream.sendall(
            _PREFACE
            + _frame(_SETTINGS, 0, 0, b"")
            + _frame(_HEADERS, _END_HEADERS, 1, headers)
            + _frame(_DATA, _END_STREAM, 1, framed)
        )
        return _read_response(stream)
    except (OSError, ssl.SSLError, ValueError):
        return None
    finally:
        stream.close()


def _read_response(stream: socket.socket) -> bytes | None:
    buffer = b""
    data = b""
    spoke_http2 = False
    while True:
        while len(buffer) < 9:
            chunk = stream.recv(65536)
            if not chunk:
                return data if spoke_http2 else None
            buffer += chunk
        length = int.from_bytes(buffer[:3], "big")
        kind, flags = buffer[3], buffer[4]
        stream_id = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
        while len(buffer) < 9 + length:
            chunk = stream.recv(65536)
            if not chunk:
                return data if spoke_http2 else None
            buffer += chunk
        payload, buffer = buffer[9 : 9 + length], buffer[9 + length :]
        if not spoke_http2:
            if kind != _SETTINGS:
                return None  # not an HTTP/2 server (an HTTP/1 answer parses as garbage)
            spoke_http2 = True
        if kind == _SETTINGS and not flags & _ACK:
            stream.sendall(_frame(_SETTINGS, _ACK, 0, b""))
        elif kind == _PING and not flags & _ACK:
            stream.sendall(_frame(_PING, _ACK, 0, payload))
        elif kind == _GOAWAY:
            return data
        elif stream_id == 1:
            if kind == _DATA:
                data += payload
            if kind == _RST_STREAM or (kind in (_DATA, _HEADERS) and flags & _END_STREAM):
                return data


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    """An HPACK header field without indexing, name and value as plain strings."""
    return b"\x00" + _string(name.encode()) + _string(value.encode())


def _string(data: bytes) -> bytes:
    if len(data) >= 127:
        raise ValueError("probe header too long")
    return bytes([len(data)]) + data


def protobuf_string(field: int, value: str) -> bytes:
    """One length-delimited protobuf field."""
    data = value.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def protobuf_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def first_string_field(framed: bytes) -> str:
    """The first length-delimited field of the first gRPC message in ``framed``."""
    message = framed[5 : 5 + int.from_bytes(framed[1:5], "big")]
    position = 0
    while position < len(message):
        key, position = _read_varint(message, position)
        if key & 7 == 2:
            size, position = _read_varint(message, position)
            return message[position : position + size].decode()
        if key & 7 == 0:
            _, position = _read_varint(message, position)
        else:
            raise ValueError(f"unexpected protobuf wire type {key & 7}")
    raise ValueError("no string field")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position
