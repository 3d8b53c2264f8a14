"""The /jpki-sim/ blueprint, standalone (``authz sim serve``) and mounted on another app."""

from __future__ import annotations

import base64
import multiprocessing
from urllib.parse import urlsplit

import pytest
import sim_support
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from flask import Flask
from sim_support import cert_of
from sim_support import sign_cert

from authz.sim import lifecycle
from authz.sim.card import AUTH_CERT
from authz.sim.http import authority_of
from authz.sim.http import create_app
from authz.sim.http import register


@pytest.fixture
def web(sim, sim_dir):
    return create_app(sim_dir, fault_sleep=0).test_client()


def ocsp_body(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
            .public_bytes(serialization.Encoding.DER))


def test_ocsp_over_http(web, sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    reply = web.post("/jpki-sim/ocsp", data=ocsp_body(cert, sim.authority("auth", 1).cert),
                     content_type="application/ocsp-request")
    assert reply.status_code == 200
    assert reply.mimetype == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(reply.data).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_needs_its_media_type_and_a_small_body(web):
    assert web.post("/jpki-sim/ocsp", data=b"x", content_type="text/plain").status_code == 415
    big = web.post("/jpki-sim/ocsp", data=b"x" * 20000, content_type="application/ocsp-request")
    assert big.status_code == 413
    assert big.mimetype == "application/problem+json"


def test_ocsp_timeout_fault_stalls_then_fails(web, sim, issue):
    cert = cert_of(issue(), AUTH_CERT)
    sim.set_fault("timeout")
    reply = web.post("/jpki-sim/ocsp", data=ocsp_body(cert, sim.authority("auth", 1).cert),
                     content_type="application/ocsp-request")
    assert reply.status_code == 503  # after sleeping fault_sleep (0 here)


def test_crl_uris_in_certificates_are_served(web, sim, issue):
    card = issue()
    lifecycle.revoke(sim, card, "sign", "keyCompromise")
    for cert in (sign_cert(card), cert_of(card, AUTH_CERT)):
        dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        uri = next(n.value for n in dp[0].full_name or [] if isinstance(
            n, x509.UniformResourceIdentifier))
        reply = web.get(urlsplit(uri).path)
        assert reply.status_code == 200 and reply.mimetype == "application/pkix-crl"
        crl = x509.load_der_x509_crl(reply.data)
        assert crl.issuer == cert.issuer
    sign_crl = x509.load_der_x509_crl(web.get(urlsplit(uri).path.replace("auth", "sign")).data)
    assert sign_crl.get_revoked_certificate_by_serial_number(sign_cert(card).serial_number)


def test_g2_dp_and_ca_arl_uris_are_served(web, sim, issue):
    cert = cert_of(issue(generation=2), AUTH_CERT)
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    uri = next(n.value for n in dp[0].full_name or [] if isinstance(
        n, x509.UniformResourceIdentifier))
    assert "/g2/" in uri and web.get(urlsplit(uri).path).status_code == 200
    for ca in sim.authorities():
        ca_dp = ca.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        arl_uri = next(n.value for n in ca_dp[0].full_name or [] if isinstance(
            n, x509.UniformResourceIdentifier))
        arl = x509.load_der_x509_crl(web.get(urlsplit(arl_uri).path).data)
        assert len(arl) == 0 and arl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/jpki-sim/crl/sign/g1.crl", "/jpki-sim/crl/auth/g2.crl",
                                  "/jpki-sim/arl/sign.crl", "/jpki-sim/arl/auth-g2.crl"])
def test_fixed_crl_paths(web, path):
    reply = web.get(path)
    assert reply.status_code == 200 and reply.mimetype == "application/pkix-crl"
    x509.load_der_x509_crl(reply.data)


@pytest.mark.parametrize("path", ["/jpki-sim/crl/nope/g1.crl", "/jpki-sim/crl/sign/g3.crl",
                                  "/jpki-sim/crl/sign/Hokkaido/Sapporo-shi.crl",
                                  "/jpki-sim/arl/sign-gx.crl", "/jpki-sim/arl/other.crl"])
def test_unknown_crls_are_404_problems(web, path):
    reply = web.get(path)
    assert reply.status_code == 404 and reply.mimetype == "application/problem+json"
    assert reply.get_json()["status"] == 404


def test_link_resolve_over_http(web, sim, issue):
    card = issue()
    der = card.certificate_der(AUTH_CERT)
    body = {"cert": base64.urlsafe_b64encode(der).rstrip(b"=").decode(), "rp_id": "rp-1"}
    reply = web.post("/jpki-sim/link/resolve", json=body)
    assert reply.status_code == 200
    assert reply.get_json() == sim.link_resolve(der, "rp-1")


@pytest.mark.parametrize("body", [None, [], {"cert": 1, "rp_id": "x"}, {"cert": "!!", "rp_id": "x"},
                                  {"cert": "AAAA", "rp_id": "x"}, {"cert": "AAAA"}])
def test_link_resolve_bad_input(web, body):
    reply = web.post("/jpki-sim/link/resolve", json=body)
    assert reply.status_code == 400
    assert reply.mimetype == "application/problem+json"
    assert set(reply.get_json()) == {"title", "status"}


def test_register_on_another_app_is_lazy(tmp_path):
    app = Flask("host")
    app.config["AUTHZ_ISSUER"] = "http://127.0.0.1:8123"
    register(app, tmp_path / "jpki-sim")
    assert not (tmp_path / "jpki-sim").exists()  # assembly does no I/O
    reply = app.test_client().get("/jpki-sim/crl/sign/g1.crl")
    assert reply.status_code == 200
    ca = x509.load_pem_x509_certificate((tmp_path / "jpki-sim" / "ca" / "sign-g1.pem").read_bytes())
    dp = ca.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert x509.UniformResourceIdentifier("http://127.0.0.1:8123/jpki-sim/arl/sign-g1.crl") in (
        dp[0].full_name or [])
    assert authority_of(app).anchor_pems("sign")[0] == ca.public_bytes(serialization.Encoding.PEM)


def test_creation_is_race_free_across_processes(tmp_path):
    target = tmp_path / "jpki-sim"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(3) as pool:
            pending = [pool.apply_async(sim_support.open_sim, (str(target), start))
                       for _ in range(3)]
            start.set()
            anchors = [p.get(timeout=120) for p in pending]
    assert anchors[0] == anchors[1] == anchors[2]
    assert len(anchors[0]) == 4
    assert (target / "sim.secret").stat().st_mode & 0o777 == 0o600
