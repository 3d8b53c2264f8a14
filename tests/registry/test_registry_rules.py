"""The registry's pure checks, without an app or a database."""

from __future__ import annotations

import json

import pytest

from authz.errors import InvalidInput
from authz.registry import rules


@pytest.mark.parametrize(("uri", "public", "ok"), [
    ("https://app.example/cb", False, True),
    ("https://app.example/cb", True, True),
    ("http://127.0.0.1:51004/cb", True, True),
    ("http://127.0.0.2/cb", True, True),  # all of 127/8 is loopback
    ("http://[::1]:51004/cb", True, True),
    ("http://[0:0:0:0:0:0:0:1]/cb", True, True),
    ("http://LOCALHOST/cb", True, True),
    ("jp.example.app:/cb", True, True),
    ("jp.example.app:/cb", False, False),
    ("http://localhost./cb", True, False),
    ("http://[::2]/cb", True, False),
    ("http://0.0.0.0/cb", True, False),
    ("ftp://app.example/cb", False, False),
    ("urn:ietf:wg:oauth:2.0:oob", True, False),  # out-of-band flow is deprecated
    ("https://app.example/a%2Fb", False, True),
    ("https://app.example/a%2", False, False),
])
def test_redirect_uri(uri, public, ok):
    if ok:
        assert rules.check_redirect_uri(uri, public=public) == uri
    else:
        with pytest.raises(InvalidInput):
            rules.check_redirect_uri(uri, public=public)


def test_redirect_uris_limit_counts_distinct_uris():
    same = ["https://app.example/cb"] * (rules.MAX_REDIRECT_URIS + 5)
    assert rules.check_redirect_uris(same, public=True) == ["https://app.example/cb"]
    assert rules.check_redirect_uris([], public=False) == []


@pytest.mark.parametrize(("name", "stored"), [
    ("  山田病院  ", "山田病院"),
    ("山田\u3000病院", "山田\u3000病院"),  # an ideographic space inside a name is kept
    ("Cafe\u0301 Clinic", "Café Clinic"),
    ("ﾔﾏﾀﾞ薬局", "ﾔﾏﾀﾞ薬局"),  # NFC, not NFKC: a name keeps its own spelling
])
def test_name_normalisation(name, stored):
    assert rules.check_name(name) == stored


@pytest.mark.parametrize(("code", "stored"), [
    ("1312345678", "1312345678"),
    ("１３１２３４５６７８", "1312345678"),
    ("AB-12", "AB-12"),
])
def test_code_normalisation(code, stored):
    assert rules.check_code(code) == stored


def test_roles_are_deduplicated_in_order():
    assert rules.check_roles("hospital", ["nurse", "physician", "nurse"], False) == [
        "nurse", "physician"]


def test_every_type_has_a_role_table_of_known_roles():
    assert set(rules.ROLES_BY_TYPE) == set(rules.INSTITUTION_TYPES)
    for roles in rules.ROLES_BY_TYPE.values():
        assert set(roles) <= set(rules.ROLES)
    assert [t for t, roles in rules.ROLES_BY_TYPE.items()
            if rules.EMERGENCY_ROLE in roles] == ["hospital"]


def test_jwks_accepts_text_and_keeps_the_keys(make_jwk):
    jwks = {"keys": [make_jwk("a"), make_jwk("b")]}
    assert rules.check_jwks(json.dumps(jwks), auth_method="private_key_jwt") == jwks


def test_jwks_kid_length_is_bounded(make_jwk):
    long_kid = {"keys": [make_jwk("k" * (rules.MAX_KID + 1))]}
    with pytest.raises(InvalidInput, match="needs a kid"):
        rules.check_jwks(json.dumps(long_kid), auth_method="private_key_jwt")


@pytest.mark.parametrize("scope", ["decisions", "introspect", "audit"])
def test_confidential_scopes_are_refused_for_public_clients(scope):
    with pytest.raises(InvalidInput, match="needs private_key_jwt"):
        rules.check_scopes(scope, auth_method="none", institution_type="resource_server")
