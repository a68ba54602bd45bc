"""Webhook deliveries over HTTP(S) with httpx: one POST per attempt, no redirects followed,
the reply's body read to at most ``MAX_REPLY`` bytes and thrown away (never logged), a time
limit per attempt.

Destinations are checked before every attempt: the host must not resolve to a loopback,
private, link-local, multicast, reserved or unspecified address (cloud metadata services
live on link-local addresses), unless the operator allows private destinations
(``APPYARD_WEBHOOK_ALLOW_PRIVATE``). A name that resolves to several addresses is refused when
any of them is refused.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from appyard import errors
from appyard.core.ports import HttpAnswer

if TYPE_CHECKING:
    import httpx

MAX_REPLY = 64 * 1024


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class HttpSender:
    def __init__(self, *, allow_private: bool = False, timeout: float = 15.0) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._made: httpx.Client | None = None

    @property
    def _client(self) -> httpx.Client:
        """Made on the first delivery: a server that sends none never loads httpx."""
        if self._made is None:
            import httpx

            self._made = httpx.Client(
                follow_redirects=False, timeout=self.timeout, trust_env=False, http2=False
            )
        return self._made

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.DestinationRefused("A webhook URL is an http(s) URL with a host.")
        if self.allow_private:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        except socket.gaierror:
            raise errors.DestinationRefused(
                f"The webhook host {parts.hostname!r} does not resolve."
            ) from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if _refused(address):
                raise errors.DestinationRefused(
                    f"The webhook host {parts.hostname!r} resolves to {address}, a loopback, "
                    "private or link-local address; appyard does not send there "
                    "(APPYARD_WEBHOOK_ALLOW_PRIVATE=true allows it)."
                )

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        self.check_url(url)
        started = time.monotonic()
        try:
            with self._client.stream("POST", url, content=body, headers=dict(headers)) as reply:
                read = 0
                for chunk in reply.iter_raw():
                    read += len(chunk)
                    if read >= MAX_REPLY:
                        break
                status = reply.status_code
        except Exception as exc:  # httpx.HTTPError and its kin: no answer came back
            import httpx

            if not isinstance(exc, httpx.HTTPError):
                raise
            raise errors.DeliveryFailed(
                f"No answer from the endpoint ({type(exc).__name__})."
            ) from None
        return HttpAnswer(status=status, latency_ms=int((time.monotonic() - started) * 1000))

    def close(self) -> None:
        if self._made is not None:
            self._made.close()
