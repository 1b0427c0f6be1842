"""Which hosts a URL taken from somebody else's data (an image list) may make vcat reach.

A list names its own URLs. Read with this machine's network position and credentials, a
hostile line could pack what only this machine can see into a shard that is then released:
the cloud's metadata service (169.254.169.254 hands out credentials), the local S3 server, a
service on a private network, a private bucket through ``s3://``. So such URLs may be
``http(s)`` or ``file:`` only (``file:`` has its own rule, ``vcat.localfiles``), and an
``http(s)`` host must resolve to public addresses only, unless the user allows it by name.
Every request is checked, redirects included, just before it is sent.

The check resolves the host name itself; a name whose addresses change between the check
and the connection (DNS rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from vcat.failures import FailureClass, FetchFailure

LIST_SCHEMES = frozenset({"http", "https", "file"})


@dataclass(frozen=True)
class HostPolicy:
    """Public hosts only, plus the host names or addresses in ``allowed`` (e.g. a lab mirror)."""

    allowed: frozenset[str] = frozenset()

    @classmethod
    def allowing(cls, hosts: Iterable[str]) -> HostPolicy:
        return cls(frozenset(host.strip().lower().strip("[]") for host in hosts))

    def check(self, url: str) -> None:
        """Raise ``FetchFailure`` (forbidden) unless ``url`` may be read under this policy."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in LIST_SCHEMES:
            raise FetchFailure(
                FailureClass.FORBIDDEN,
                f"{url}: a list may name http(s) and file: URLs only; a {scheme or 'schemeless'} "
                "URL would be read with this machine's own credentials",
            )
        if scheme == "file":
            return
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchFailure(FailureClass.FORBIDDEN, f"{url}: the URL names no host")
        if host in self.allowed:
            return
        for address in _addresses(host, parts.port or (443 if scheme == "https" else 80)):
            if address.is_global and not address.is_multicast:
                continue
            raise FetchFailure(
                FailureClass.FORBIDDEN,
                f"{url}: {host} is {_kind(address)} address ({address}), which a list may not "
                f"make vcat read; if this host is meant to serve the files, allow {host!r} "
                "by name (allowed_hosts in the stage's params)",
            )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_RESOLVED: dict[tuple[str, int], tuple[Address, ...]] = {}


def _addresses(host: str, port: int) -> tuple[Address, ...]:
    """Every address ``host`` stands for; none when it does not resolve (the connection
    then fails on its own, with its own message). Answers are kept per process, since a
    list names the same few hosts millions of times; a failed lookup is not kept, so a name
    that resolves later is checked then."""
    try:
        return (_unmapped(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    known = _RESOLVED.get((host, port))
    if known is not None:
        return known
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ()
    found = tuple(_unmapped(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos)
    _RESOLVED[(host, port)] = found
    return found


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _kind(address: Address) -> str:
    for attribute, name in (
        ("is_unspecified", "an unspecified"),
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_private", "a private"),
    ):
        if getattr(address, attribute):
            return name
    return "a non-public"


class _CheckedAdapter(HTTPAdapter):
    """Sends a request only after ``policy`` accepts its URL (redirects are requests too)."""

    def __init__(self, policy: HostPolicy) -> None:
        super().__init__()
        self.policy = policy

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.policy.check(str(request.url))
        return super().send(request, *args, **kwargs)


def checked_session(policy: HostPolicy) -> requests.Session:
    """A ``requests`` session whose every request, redirects included, obeys ``policy``."""
    session = requests.Session()
    adapter = _CheckedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
