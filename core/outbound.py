"""The one guard for outbound URLs that users set (today: webhook callback URLs, from the admin page
and the REST API), and the one way to send to them.

A URL is checked when it is saved (:func:`outbound_url_validate`) and again on every send
(:func:`outbound_target_resolve`, then :func:`outbound_post`):

- http or https (https only when ``SCRM_ENV=production``); no ``user:password@``; a host is required;
- the host is resolved once; every address it resolves to must be public — loopback, private
  (RFC 1918, fc00::/7, fec0::/10), CGNAT 100.64/10, link-local (169.254/16, fe80::/10), cloud metadata
  addresses, multicast, unspecified, reserved and other non-global ranges are refused, also when they
  hide inside IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo, NAT64);
- the request then connects to that checked address (:class:`PinnedAddressAdapter`): the URL's host
  is only used for the Host header, TLS SNI and certificate checking, so a DNS answer that changes
  between check and connect (rebinding) cannot move the request; redirects are not followed and
  proxies from the environment are not used.

``settings.OUTBOUND_ALLOWLIST`` (env ``OUTBOUND_ALLOWLIST``: comma-separated ``host:port``, IPv6 as
``[::1]:8000``; empty by default) names addresses let through anyway: an entry matches the URL's own
host and port, or a resolved address and the port. `make run` puts its local sandboxes there.

At save time a host name that does not resolve (yet) is accepted: nothing can be reached through it,
and the send-time check is the one that counts.

Not for URLs the deployer sets in the environment (CRM_BASE_URL, WECOM_API_BASE_URL,
MESSAGING_BASE_URL): those are configuration, trusted as such, and not checked here.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
import urllib3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from requests import Session
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL

from core.errors import ApplicationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

RESPONSE_READ_LIMIT = 1024 * 1024  # bytes of a response read to measure it; the rest is not read

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# link-local or CGNAT already, except Oracle's; named so the rule survives a change of classification
_CLOUD_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, Huawei Cloud, OpenStack
    "169.254.170.2",    # AWS ECS task metadata
    "169.254.0.23",     # Tencent Cloud
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud
    "fd00:ec2::254",    # AWS over IPv6
))
# not global, whatever this Python's ipaddress tables say (3.11 calls some of these global)
_SPECIAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "240.0.0.0/4", "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
))
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


class OutboundError(enum.StrEnum):
    URL_INVALID = "outbound_url_invalid"
    SCHEME_NOT_ALLOWED = "outbound_scheme_not_allowed"
    USERINFO_NOT_ALLOWED = "outbound_userinfo_not_allowed"
    ADDRESS_NOT_ALLOWED = "outbound_address_not_allowed"
    HOST_UNRESOLVABLE = "outbound_host_unresolvable"


class AddressRefusal(enum.StrEnum):
    """Why an address may not be reached; the message names the field and the address."""

    INTERNAL = "internal"        # loopback, RFC 1918, CGNAT, unique/site-local IPv6
    LINK_LOCAL = "link_local"    # 169.254/16, fe80::/10, cloud metadata
    SPECIAL = "special"          # multicast, unspecified, reserved, documentation, other non-global


_REFUSAL_MESSAGES = {
    AddressRefusal.INTERNAL: gettext_noop("%(label)s指向内网或本机（%(address)s），不允许"),
    AddressRefusal.LINK_LOCAL: gettext_noop("%(label)s指向链路本地或云服务器元数据地址（%(address)s），不允许"),
    AddressRefusal.SPECIAL: gettext_noop("%(label)s指向组播、保留或未指定地址（%(address)s），不允许"),
}


class OutboundURLRefused(ApplicationError):
    """An outbound URL the guard refuses. ``temporary`` when only the DNS answer is missing (retry later)."""

    def __init__(self, code: str, message: str, *, field: str, temporary: bool = False):
        super().__init__(code, message, [{"field": field, "message": message}])
        self.temporary = temporary


@dataclass(frozen=True)
class OutboundTarget:
    """A checked URL and the one address a request to it connects to."""

    url: str
    scheme: str
    host: str       # ASCII (IDNA), lower case, no brackets, no trailing dot
    port: int
    address: str    # the checked IP address

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class OutboundResponse:
    """What is kept of an answer: the status and how many bytes its body had (never the body)."""

    status_code: int
    length: int


# --- addresses ---------------------------------------------------------------------------------

def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or Teredo address carries (checked as well as the IPv6 address)."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def outbound_address_refusal(*, address: str | IPAddress) -> AddressRefusal | None:
    """Why this address may not be reached from the server, or None when it is a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 address
            return outbound_address_refusal(address=ip.ipv4_mapped)
        if ip in _NAT64:  # 64:ff9b::a.b.c.d (DNS64) reaches that IPv4 address through the NAT64 gateway
            return outbound_address_refusal(address=ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            refusal = outbound_address_refusal(address=embedded)
            if refusal is not None:
                return refusal
    if ip.is_unspecified:
        return AddressRefusal.SPECIAL
    if ip.is_loopback:
        return AddressRefusal.INTERNAL
    if ip in _CLOUD_METADATA or ip.is_link_local:
        return AddressRefusal.LINK_LOCAL
    if ip.is_multicast or ip.is_reserved or any(ip in n for n in _SPECIAL_NETWORKS if n.version == ip.version):
        return AddressRefusal.SPECIAL
    if ip.is_private or (ip.version == 4 and ip in _CGNAT) or (ip.version == 6 and ip in _SITE_LOCAL):
        return AddressRefusal.INTERNAL
    if not ip.is_global:
        return AddressRefusal.SPECIAL
    return None


def host_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (order kept, duplicates dropped); raises OSError when none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- the allow-list ------------------------------------------------------------------------------

def _host_normalize(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def outbound_allowlist() -> frozenset[tuple[str, int]]:
    """``(host, port)`` pairs of ``settings.OUTBOUND_ALLOWLIST``; read on every check (no caching)."""
    entries = getattr(settings, "OUTBOUND_ALLOWLIST", None) or []
    if isinstance(entries, str):
        entries = entries.split(",")
    pairs = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 \
                or (":" in host and not (host.startswith("[") and host.endswith("]"))):
            raise ImproperlyConfigured(f"OUTBOUND_ALLOWLIST: {entry!r} is not host:port (IPv6 as [addr]:port)")
        pairs.add((_host_normalize(host), int(port)))
    return frozenset(pairs)


# --- URLs ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Parsed:
    scheme: str
    host: str
    port: int
    literal: IPAddress | None


def _refuse(code: OutboundError, message: str, *, field: str, temporary: bool = False) -> OutboundURLRefused:
    return OutboundURLRefused(code, message, field=field, temporary=temporary)


def _parse(*, url: str, field: str, label: str) -> _Parsed:
    invalid = _("%(label)s不是有效的网址") % {"label": label}
    if not url or any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in url):
        raise _refuse(OutboundError.URL_INVALID, invalid, field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse(OutboundError.URL_INVALID, invalid, field=field) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _refuse(OutboundError.SCHEME_NOT_ALLOWED, _("%(label)s应为 http(s) 网址") % {"label": label},
                      field=field)
    if scheme != "https" and settings.SCRM_ENV == "production":
        raise _refuse(OutboundError.SCHEME_NOT_ALLOWED, _("%(label)s必须使用 https") % {"label": label}, field=field)
    if "@" in parts.netloc:
        raise _refuse(OutboundError.USERINFO_NOT_ALLOWED,
                      _("%(label)s不能包含用户名或密码") % {"label": label}, field=field)
    host = (parts.hostname or "").rstrip(".")
    if not host or port == 0:
        raise _refuse(OutboundError.URL_INVALID, invalid, field=field)
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")  # as requests sends it
        except idna.IDNAError:
            raise _refuse(OutboundError.URL_INVALID, invalid, field=field) from None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    return _Parsed(scheme=scheme, host=host.lower(), port=port or (443 if scheme == "https" else 80),
                   literal=literal)


def _addresses_check(*, parsed: _Parsed, addresses: list[str], field: str, label: str) -> str:
    """The first address, once every one of them may be reached (or is allow-listed)."""
    allowlist = outbound_allowlist()
    named = (_host_normalize(parsed.host), parsed.port) in allowlist
    for address in addresses:
        if named or (_host_normalize(address), parsed.port) in allowlist:
            continue
        refusal = outbound_address_refusal(address=address)
        if refusal is not None:
            message = _(_REFUSAL_MESSAGES[refusal]) % {"label": label, "address": address}
            raise _refuse(OutboundError.ADDRESS_NOT_ALLOWED, message, field=field)
    return addresses[0]


def _resolve(*, parsed: _Parsed, resolver: Resolver | None) -> list[str]:
    if parsed.literal is not None:
        return [str(parsed.literal)]
    addresses = (resolver or host_resolve)(parsed.host, parsed.port)
    if not addresses:
        raise OSError(f"{parsed.host} has no address")
    return list(addresses)


def outbound_url_validate(*, url: str, field: str, label: str, resolver: Resolver | None = None) -> None:
    """Check a URL a user is saving; raises :class:`OutboundURLRefused` naming ``field``.

    A host name that does not resolve is accepted here (see the module doc); one that resolves
    to any refused address is not.
    """
    parsed = _parse(url=url, field=field, label=label)
    try:
        addresses = _resolve(parsed=parsed, resolver=resolver)
    except (OSError, UnicodeError):
        return
    _addresses_check(parsed=parsed, addresses=addresses, field=field, label=label)


def outbound_target_resolve(*, url: str, field: str, label: str,
                            resolver: Resolver | None = None) -> OutboundTarget:
    """Check a URL about to be requested and resolve its host once: the address to connect to.

    Raises :class:`OutboundURLRefused`; ``temporary`` is set when the host did not resolve.
    """
    parsed = _parse(url=url, field=field, label=label)
    try:
        addresses = _resolve(parsed=parsed, resolver=resolver)
    except (OSError, UnicodeError):
        raise _refuse(OutboundError.HOST_UNRESOLVABLE,
                      _("%(label)s的主机名无法解析（%(host)s）") % {"label": label, "host": parsed.host},
                      field=field, temporary=True) from None
    address = _addresses_check(parsed=parsed, addresses=addresses, field=field, label=label)
    return OutboundTarget(url=url, scheme=parsed.scheme, host=parsed.host, port=parsed.port, address=address)


# --- sending -------------------------------------------------------------------------------------

class PinnedAddressAdapter(HTTPAdapter):
    """A requests transport that connects to ``target.address`` for ``target``'s URL and nothing else.

    The connection pool is opened on the checked IP; the URL's host name goes in the Host header and,
    for https, in SNI (``server_hostname``) and the certificate check (``assert_hostname``), so the
    certificate must still be valid for the name. No DNS lookup happens after the check.
    """

    def __init__(self, *, target: OutboundTarget):
        self.target = target
        super().__init__(max_retries=0)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        target = self.target
        scheme = host_params["scheme"]
        port = host_params["port"] or (443 if scheme == "https" else 80)
        host = (host_params["host"] or "").rstrip(".").lower()
        if (scheme, host, port) != (target.scheme, target.host, target.port):
            raise InvalidURL(f"{request.url} is not the checked URL", request=request)
        if scheme == "https":
            pool_kwargs = {**pool_kwargs, "server_hostname": target.host, "assert_hostname": target.host}
        return self.poolmanager.connection_from_host(host=target.address, port=target.port, scheme=scheme,
                                                     pool_kwargs=pool_kwargs)

    def send(self, request, **kwargs):
        request.headers["Host"] = self.target.host_header
        return super().send(request, **kwargs)


def outbound_post(*, target: OutboundTarget, data: bytes, headers: dict,
                  timeout: float | tuple[float, float]) -> OutboundResponse:
    """POST to a checked target; the status and the body's length (read up to RESPONSE_READ_LIMIT
    within the read timeout), never the body. ``timeout`` is seconds, or (connect, read) seconds.
    Raises ``requests.RequestException`` when no answer came."""
    with Session() as session:
        session.trust_env = False  # no proxy from the environment: we connect to the checked address
        adapter = PinnedAddressAdapter(target=target)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        response = session.post(target.url, data=data, headers=headers, timeout=timeout, allow_redirects=False,
                                stream=True)
        length, deadline = 0, time.monotonic() + (timeout[1] if isinstance(timeout, tuple) else timeout)
        with response:
            try:
                for chunk in response.raw.stream(8192, decode_content=False):
                    length += len(chunk)
                    if length >= RESPONSE_READ_LIMIT or time.monotonic() > deadline:
                        break
            except (urllib3.exceptions.HTTPError, OSError):
                pass  # the status came; a body cut short is measured as far as it came
        return OutboundResponse(status_code=response.status_code, length=min(length, RESPONSE_READ_LIMIT))
