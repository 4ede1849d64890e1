"""HTTPS with a private CA (`posture tls cert`), driven by the official SDKs unchanged: the full
repair and rollback flow over HTTPS; a certificate from another CA refused by each SDK; TLS 1.0
and 1.1 refused by the server while 1.2 and 1.3 are served; ALPN agrees on HTTP/1.1."""
import socket
import ssl

import pytest

from conftest import Server, issue_certificate
from test_conformance import FLOWS, full_flow, make_client


@pytest.fixture
def tls_server(tmp_path):
    s = Server(tmp_path / "data", tls_dir=tmp_path / "tls")
    yield s
    s.stop()


@pytest.mark.parametrize("kind", list(FLOWS))
def test_full_repair_and_rollback_flow_over_https(tls_server, kind):
    full_flow(tls_server, make_client(tls_server, kind), kind)


@pytest.mark.parametrize("kind", list(FLOWS))
def test_a_certificate_from_another_ca_is_refused_by_each_sdk(tls_server, tmp_path, kind):
    issue_certificate(tmp_path / "other")
    # The wrong CA first: the tea SDK keeps one HTTP session per host:port that gathers every CA
    # it is given, so after the right one a wrong one would pass unnoticed.
    wrong = make_client(tls_server, kind, ca=tmp_path / "other" / "ca.pem")
    with pytest.raises(Exception) as refused:
        wrong.call("ListCheckResult", {"PageSize": 1})
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value), refused.value
    right = make_client(tls_server, kind)
    assert right.call("ListCheckResult", {"PageSize": 1})["PageInfo"]["TotalCount"] > 0


def handshake(server, version: ssl.TLSVersion, alpn=("h2", "http/1.1")):
    """A handshake offering only `version`; the SSL socket's (version, ALPN)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(server.ca))
    ctx.minimum_version = ctx.maximum_version = version
    # OpenSSL's default security level will not even offer TLS 1.0/1.1: level 0 lets the client
    # offer them, so that the refusal seen is the server's.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.set_alpn_protocols(list(alpn))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            return tls.version(), tls.selected_alpn_protocol()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_are_refused_by_the_server(tls_server, version):
    with pytest.raises(ssl.SSLError) as e:
        handshake(tls_server, version)
    # An alert from the server (protocol_version or handshake_failure), not a client that
    # could not offer the version at all (NO_PROTOCOLS_AVAILABLE).
    assert "ALERT" in (e.value.reason or ""), e.value


def test_tls_1_2_and_1_3_are_served_with_http_1_1(tls_server):
    assert handshake(tls_server, ssl.TLSVersion.TLSv1_2) == ("TLSv1.2", "http/1.1")
    assert handshake(tls_server, ssl.TLSVersion.TLSv1_3) == ("TLSv1.3", "http/1.1")
