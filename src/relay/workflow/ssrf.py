"""The outbound-request guard every tenant-driven HTTP call goes through (http-request node,
document URLs, web tools): loopback, private, link-local and reserved addresses are refused
unless ``HttpRequestConfig.allow_private_addresses``, for every request, redirects included."""

from __future__ import annotations

import ipaddress
import socket

import httpx

from relay.workflow.config import HttpRequestConfig
from relay.workflow.errors import NodeError


def check_address(host: str, config: HttpRequestConfig) -> None:
    """Refuse hosts resolving to loopback, private, link-local or reserved addresses."""
    if config.allow_private_addresses:
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise NodeError(f"cannot resolve host {host!r}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise NodeError(
                f"refusing to call {host} ({address}): private, loopback and link-local "
                "addresses are not allowed"
            )


def guarded_client(config: HttpRequestConfig, **kwargs: object) -> httpx.Client:
    """An httpx client whose every request (redirects too) passes :func:`check_address`."""

    def guard(outgoing: httpx.Request) -> None:
        check_address(outgoing.url.host, config)

    return httpx.Client(
        timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
        verify=config.verify_ssl,
        follow_redirects=True,
        event_hooks={"request": [guard]},
        **kwargs,  # type: ignore[arg-type]
    )
