"""The outbound URL guard (core/outbound.py): the address classifier, URL rules, the allow-list,
DNS rebinding, redirects and TLS through the pinned transport. No outside network: public addresses
are only classified, or their connection attempt is recorded and refused."""

import datetime
import ipaddress
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import urllib3.util.connection
from django.core.exceptions import ImproperlyConfigured

from core import outbound
from core.outbound import AddressRefusal, OutboundURLRefused, outbound_address_refusal
from scrm.launcher import sandbox_allowlist

INTERNAL, LINK_LOCAL, SPECIAL = AddressRefusal.INTERNAL, AddressRefusal.LINK_LOCAL, AddressRefusal.SPECIAL
PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(("address", "refusal"), [
    ("127.0.0.1", INTERNAL),
    ("127.8.9.10", INTERNAL),
    ("10.0.0.1", INTERNAL),
    ("10.255.1.2", INTERNAL),
    ("172.16.0.1", INTERNAL),
    ("172.31.255.254", INTERNAL),
    ("192.168.1.1", INTERNAL),
    ("100.64.0.1", INTERNAL),  # CGNAT
    ("100.127.255.254", INTERNAL),
    ("169.254.169.254", LINK_LOCAL),  # cloud metadata
    ("169.254.0.23", LINK_LOCAL),
    ("100.100.100.200", LINK_LOCAL),  # Alibaba Cloud metadata
    ("192.0.0.192", LINK_LOCAL),  # Oracle Cloud metadata (Python 3.11 calls it global)
    ("::1", INTERNAL),
    ("fe80::1", LINK_LOCAL),
    ("fe80::1%eth0", LINK_LOCAL),
    ("fc00::1", INTERNAL),
    ("fd00:ec2::254", LINK_LOCAL),  # AWS metadata over IPv6
    ("fec0::1", INTERNAL),  # site-local
    ("::ffff:127.0.0.1", INTERNAL),  # IPv4-mapped
    ("::ffff:10.0.0.1", INTERNAL),
    ("::ffff:169.254.169.254", LINK_LOCAL),
    ("2002:7f00:1::", INTERNAL),  # 6to4 around 127.0.0.1
    ("2002:a9fe:a9fe::", LINK_LOCAL),  # 6to4 around 169.254.169.254
    ("64:ff9b::7f00:1", INTERNAL),  # NAT64 around 127.0.0.1
    ("::7f00:1", SPECIAL),  # IPv4-compatible (deprecated)
    ("0.0.0.0", SPECIAL),  # noqa: S104 - an address under test, not a bind
    ("::", SPECIAL),
    ("0.1.2.3", SPECIAL),
    ("224.0.0.1", SPECIAL),
    ("239.255.255.250", SPECIAL),
    ("ff02::1", SPECIAL),
    ("ff0e::1", SPECIAL),
    ("240.0.0.1", SPECIAL),
    ("255.255.255.255", SPECIAL),
    ("198.18.0.1", SPECIAL),
    ("192.0.2.1", SPECIAL),
    ("2001:db8::1", SPECIAL),
    (PUBLIC, None),
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("172.32.0.1", None),  # just outside 172.16/12
    ("100.128.0.1", None),  # just outside 100.64/10
    ("2606:2800:220:1:248:1893:25c8:1946", None),
    ("::ffff:93.184.216.34", None),
    ("64:ff9b::5db8:d822", None),  # NAT64 around 93.184.216.34
    ("2002:5db8:d822::1", None),  # 6to4 around it
])
def test_address_classifier(address, refusal):
    assert outbound_address_refusal(address=address) == refusal
    assert outbound_address_refusal(address=ipaddress.ip_address(address.split("%")[0])) == refusal


# --- URL rules ---------------------------------------------------------------------------------

def validate(url, **kwargs):
    outbound.outbound_url_validate(url=url, field="url", label="回调地址", **kwargs)


def refusal_of(url, **kwargs) -> OutboundURLRefused:
    with pytest.raises(OutboundURLRefused) as err:
        validate(url, **kwargs)
    return err.value


@pytest.mark.parametrize(("url", "code", "message"), [
    ("http://127.0.0.1:8000/hook", "outbound_address_not_allowed", "回调地址指向内网或本机（127.0.0.1），不允许"),
    ("http://[::1]:8000/hook", "outbound_address_not_allowed", "回调地址指向内网或本机（::1），不允许"),
    ("http://169.254.169.254/latest/meta-data/", "outbound_address_not_allowed",
     "回调地址指向链路本地或云服务器元数据地址（169.254.169.254），不允许"),
    ("http://[::ffff:127.0.0.1]/", "outbound_address_not_allowed", "回调地址指向内网或本机（::ffff:7f00:1），不允许"),
    ("http://0.0.0.0:8000/", "outbound_address_not_allowed", "回调地址指向组播、保留或未指定地址（0.0.0.0），不允许"),
    ("http://localhost:8000/", "outbound_address_not_allowed", "回调地址指向内网或本机（127.0.0.1），不允许"),
    # numeric spellings the resolver turns into 127.0.0.1
    ("http://2130706433/", "outbound_address_not_allowed", "回调地址指向内网或本机（127.0.0.1），不允许"),
    ("http://0x7f.1/", "outbound_address_not_allowed", "回调地址指向内网或本机（127.0.0.1），不允许"),
    ("http://user:secret@hooks.example.com/", "outbound_userinfo_not_allowed", "回调地址不能包含用户名或密码"),
    ("http://@hooks.example.com/", "outbound_userinfo_not_allowed", "回调地址不能包含用户名或密码"),
    ("ftp://hooks.example.com/", "outbound_scheme_not_allowed", "回调地址应为 http(s) 网址"),
    ("file:///etc/passwd", "outbound_scheme_not_allowed", "回调地址应为 http(s) 网址"),
    ("http://hooks.example.com\\@127.0.0.1/", "outbound_url_invalid", "回调地址不是有效的网址"),
    ("http://hooks.example.com:99999/", "outbound_url_invalid", "回调地址不是有效的网址"),
    ("http:///nohost", "outbound_url_invalid", "回调地址不是有效的网址"),
])
def test_urls_refused_when_saved_name_the_field_and_the_reason(url, code, message):
    err = refusal_of(url)
    assert (err.code, err.message) == (code, message)
    assert err.details == [{"field": "url", "message": message}]


def test_a_name_is_refused_when_any_of_its_addresses_is_internal():
    err = refusal_of("https://hooks.example.com/", resolver=lambda host, port: [PUBLIC, "10.0.0.7"])
    assert "10.0.0.7" in err.message
    validate("https://hooks.example.com/", resolver=lambda host, port: [PUBLIC])


def test_a_name_that_does_not_resolve_is_accepted_when_saved_but_not_sent_to():
    validate("https://hooks.invalid/a")
    with pytest.raises(OutboundURLRefused) as err:
        outbound.outbound_target_resolve(url="https://hooks.invalid/a", field="url", label="回调地址")
    assert err.value.code == "outbound_host_unresolvable" and err.value.temporary
    assert err.value.message == "回调地址的主机名无法解析（hooks.invalid）"


def test_https_only_in_production(settings):
    validate(f"http://{PUBLIC}/hook")
    settings.SCRM_ENV = "production"
    err = refusal_of(f"http://{PUBLIC}/hook")
    assert (err.code, err.message) == ("outbound_scheme_not_allowed", "回调地址必须使用 https")
    validate(f"https://{PUBLIC}/hook")


# --- the allow-list ------------------------------------------------------------------------------

def test_the_allowlist_lets_exactly_the_named_host_and_port_through(settings):
    settings.OUTBOUND_ALLOWLIST = ["127.0.0.1:8123", "[::1]:8124", "Sandbox.Local:8125"]
    assert outbound.outbound_allowlist() == {("127.0.0.1", 8123), ("::1", 8124), ("sandbox.local", 8125)}
    validate("http://127.0.0.1:8123/hook")
    validate("http://[::1]:8124/hook")
    validate("http://sandbox.local:8125/hook", resolver=lambda host, port: ["127.0.0.1"])
    # a name resolving to an allowed address and port
    validate("http://rebind.test:8123/hook", resolver=lambda host, port: ["127.0.0.1"])
    assert refusal_of("http://127.0.0.1:8124/hook").code == "outbound_address_not_allowed"
    assert refusal_of("http://127.0.0.2:8123/hook").code == "outbound_address_not_allowed"
    assert refusal_of("http://[::1]:8123/hook").code == "outbound_address_not_allowed"
    # the other rules still apply
    assert refusal_of("http://u:p@127.0.0.1:8123/hook").code == "outbound_userinfo_not_allowed"
    settings.SCRM_ENV = "production"
    assert refusal_of("http://127.0.0.1:8123/hook").code == "outbound_scheme_not_allowed"


def test_the_allowlist_is_empty_by_default_and_malformed_entries_are_configuration_errors(settings):
    if "OUTBOUND_ALLOWLIST" not in os.environ:
        assert settings.OUTBOUND_ALLOWLIST == []
    settings.OUTBOUND_ALLOWLIST = "127.0.0.1:8123, ,localhost:9"
    assert outbound.outbound_allowlist() == {("127.0.0.1", 8123), ("localhost", 9)}
    for bad in ("127.0.0.1", "::1:8000", "host:http", ":80", "127.0.0.1:0"):
        settings.OUTBOUND_ALLOWLIST = [bad]
        with pytest.raises(ImproperlyConfigured):
            outbound.outbound_allowlist()


def test_the_launcher_allowlists_its_sandboxes_and_nothing_else():
    assert sandbox_allowlist(current="", ports=[41001, None, 41003]) == "127.0.0.1:41001,127.0.0.1:41003"
    assert sandbox_allowlist(current=" erp.local:8443 ", ports=[None, 41002, None]) == "erp.local:8443,127.0.0.1:41002"
    assert sandbox_allowlist(current="", ports=[None, None, None]) == ""


# --- sending: the checked address is the one connected to -----------------------------------------

class _Recorder(BaseHTTPRequestHandler):
    status = 200
    location = ""

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, self.headers["Host"]))
        self.send_response(self.status)
        if self.location:
            self.send_header("Location", self.location)
        body = b"internal secret body"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(host="127.0.0.1", port=0, status=200, location="", tls_context=None):
    handler = type("Handler", (_Recorder,), {"status": status, "location": location})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.seen = []
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers():
    started = []

    def start(**kwargs):
        server = serve(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_dns_rebinding_cannot_move_the_connection(monkeypatch, servers):
    """The resolver answers a public address first, then 127.0.0.1: the request goes to the first only."""
    local = servers()
    port = local.server_address[1]
    answers = [[PUBLIC], ["127.0.0.1"]]
    calls = []

    def resolver(host, port):
        calls.append(host)
        return answers.pop(0)

    connects = []

    def create_connection(address, *args, **kwargs):
        connects.append(address)
        raise ConnectionRefusedError("no outside network in tests")

    target = outbound.outbound_target_resolve(url=f"http://rebind.test:{port}/hook", field="url", label="回调地址",
                                              resolver=resolver)
    assert (target.host, target.address, target.port) == ("rebind.test", PUBLIC, port)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    with pytest.raises(requests.ConnectionError):
        outbound.outbound_post(target=target, data=b"{}", headers={}, timeout=2)
    assert connects == [(PUBLIC, port)]
    assert calls == ["rebind.test"]  # resolved once, at the check
    assert local.seen == []


def test_rebinding_to_a_second_local_service_reaches_only_the_checked_one(settings, servers):
    """End to end over real sockets: 127.0.0.1:P is allow-listed and checked; the name later points
    at 127.0.0.2:P (another service on the same port), which never sees the request."""
    allowed = servers()
    port = allowed.server_address[1]
    internal = servers(host="127.0.0.2", port=port)
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{port}"]
    answers = [["127.0.0.1"], ["127.0.0.2"]]
    target = outbound.outbound_target_resolve(url=f"http://rebind.test:{port}/hook?x=1", field="url",
                                              label="回调地址", resolver=lambda host, p: answers.pop(0))
    response = outbound.outbound_post(target=target, data=b"{}", headers={}, timeout=5)
    assert (response.status_code, response.length) == (200, len(b"internal secret body"))
    assert not hasattr(response, "text") and not hasattr(response, "content")
    assert allowed.seen == [("/hook?x=1", f"rebind.test:{port}")]
    assert internal.seen == []


def test_redirects_are_not_followed(settings, servers):
    inside = servers()
    redirector = servers(status=302, location=f"http://127.0.0.1:{inside.server_address[1]}/")
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{redirector.server_address[1]}"]
    target = outbound.outbound_target_resolve(url=f"http://127.0.0.1:{redirector.server_address[1]}/", field="url",
                                              label="回调地址")
    assert outbound.outbound_post(target=target, data=b"{}", headers={}, timeout=5).status_code == 302
    assert len(redirector.seen) == 1 and inside.seen == []


def test_environment_proxies_are_not_used(monkeypatch, settings, servers):
    local = servers()
    port = local.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{port}"]
    target = outbound.outbound_target_resolve(url=f"http://127.0.0.1:{port}/", field="url", label="回调地址")
    assert outbound.outbound_post(target=target, data=b"{}", headers={}, timeout=5).status_code == 200
    assert len(local.seen) == 1


# --- TLS through the pinned address: SNI and the certificate are for the URL's host name ------------

def _certificates(tmp_path, name):
    """A CA file, and a server certificate + key for ``name`` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(ca_file), str(cert_file), str(key_file)


@pytest.mark.parametrize(("certificate_name", "ok"), [("hooks.test", True), ("other.test", False)])
def test_tls_to_the_pinned_address_uses_the_host_name_for_sni_and_the_certificate(
        tmp_path, settings, servers, certificate_name, ok):
    ca_file, cert_file, key_file = _certificates(tmp_path, certificate_name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    sni = []
    context.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    server = servers(tls_context=context)
    port = server.server_address[1]
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{port}"]
    target = outbound.outbound_target_resolve(url=f"https://hooks.test:{port}/hook", field="url", label="回调地址",
                                              resolver=lambda host, p: ["127.0.0.1"])
    with requests.Session() as session:  # outbound_post with a test CA instead of the system's
        session.trust_env = False
        session.mount("https://", outbound.PinnedAddressAdapter(target=target))
        if ok:
            response = session.post(target.url, data=b"{}", verify=ca_file, timeout=5, allow_redirects=False)
            assert response.status_code == 200
            assert server.seen == [("/hook", f"hooks.test:{port}")]
        else:
            with pytest.raises(requests.exceptions.SSLError):
                session.post(target.url, data=b"{}", verify=ca_file, timeout=5, allow_redirects=False)
            assert server.seen == []
    assert sni and set(sni) == {"hooks.test"}


def test_the_pinned_transport_refuses_any_other_url(settings, servers):
    local = servers()
    port = local.server_address[1]
    settings.OUTBOUND_ALLOWLIST = [f"127.0.0.1:{port}"]
    target = outbound.outbound_target_resolve(url=f"http://127.0.0.1:{port}/", field="url", label="回调地址")
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", outbound.PinnedAddressAdapter(target=target))
        with pytest.raises(requests.exceptions.InvalidURL):
            session.post(f"http://localhost:{port}/", data=b"{}", timeout=5)
    assert local.seen == []


def test_host_resolve_uses_the_system_resolver():
    assert "127.0.0.1" in outbound.host_resolve("localhost", 80)
    with pytest.raises(OSError):
        outbound.host_resolve("hooks.invalid", 80)
