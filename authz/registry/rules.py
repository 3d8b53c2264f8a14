"""What may be registered: institution types, roles, scopes, redirect URIs, client keys."""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from authz.config import is_loopback_host
from authz.errors import InvalidInput

INSTITUTION_TYPES = ("hospital", "clinic", "pharmacy", "care_provider", "municipality",
                     "research", "resource_server")
ROLES = ("physician", "dentist", "pharmacist", "nurse", "care_worker", "municipal_officer",
         "researcher", "emergency_physician")
# Which practitioner roles an institution of each type may assert. A role outside this table is
# refused at registration, so a decision request can never carry it.
ROLES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "hospital": ("physician", "dentist", "pharmacist", "nurse", "emergency_physician"),
    "clinic": ("physician", "dentist", "pharmacist", "nurse"),
    "pharmacy": ("pharmacist",),
    "care_provider": ("care_worker", "nurse", "physician"),
    "municipality": ("municipal_officer",),
    "research": ("researcher",),
    "resource_server": (),
}
EMERGENCY_ROLE = "emergency_physician"
SCOPES = ("openid", "profile", "offline_access", "consents", "decisions", "introspect", "audit")
PUBLIC_CLIENT_SCOPES = frozenset({"openid", "profile", "offline_access", "consents"})
AUTH_METHODS = ("none", "private_key_jwt")
# Patterns are used with fullmatch: "$" alone would also accept a trailing newline.
_CODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,31}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{3,64}")
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+")
# RFC 3986 §2: unreserved, reserved and "%". Anything else (spaces, controls, backslashes,
# non-ASCII such as homograph host names) must be percent-encoded or punycoded by the operator,
# so the registered string is the one the client will send and exact matching stays exact.
_URI_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Line and paragraph separators are not "C" characters but would still break one-line output.
_NAME_FORBIDDEN_CATEGORIES = ("C", "Zl", "Zp")
MAX_URI = 2000
MAX_REDIRECT_URIS = 10
MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 10
MAX_KID = 128
_B64URL_43 = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 octets


def check_name(name: str, what: str = "name") -> str:
    """A display name: trimmed, NFC-normalised, one line, 1 to 200 characters."""
    text = unicodedata.normalize("NFC", name.strip())
    if not 1 <= len(text) <= 200:
        raise InvalidInput(f"{what} must be 1 to 200 characters")
    if any(unicodedata.category(ch).startswith(_NAME_FORBIDDEN_CATEGORIES) for ch in text):
        raise InvalidInput(f"{what} must not contain control characters or line breaks")
    return text


def check_type(kind: str) -> str:
    if kind not in INSTITUTION_TYPES:
        raise InvalidInput(f"unknown institution type {kind!r}; one of: "
                           + ", ".join(INSTITUTION_TYPES))
    return kind


def check_code(code: str) -> str:
    """An institution code; NFKC turns full-width digits and letters (１３０１) into ASCII."""
    text = unicodedata.normalize("NFKC", code)
    if not _CODE.fullmatch(text):
        raise InvalidInput("institution code must be 1 to 32 letters, digits or '-'")
    return text


def check_roles(kind: str, roles: Iterable[str], emergency: bool) -> list[str]:
    """Roles for an institution; empty means every role its type allows."""
    allowed = ROLES_BY_TYPE[kind]
    if emergency and kind != "hospital":
        raise InvalidInput("only a hospital can be registered for emergency care")
    chosen = list(dict.fromkeys(roles)) or [
        r for r in allowed if r != EMERGENCY_ROLE or emergency]
    for role in chosen:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; one of: " + ", ".join(ROLES))
        if role not in allowed:
            raise InvalidInput(f"a {kind} cannot assert the role {role!r}")
    if EMERGENCY_ROLE in chosen and not emergency:
        raise InvalidInput("the emergency_physician role needs --emergency")
    return chosen


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidInput("client id must be 3 to 64 characters of A-Z a-z 0-9 . _ ~ -")
    return client_id


def check_auth_method(method: str) -> str:
    if method not in AUTH_METHODS:
        raise InvalidInput("auth method must be none or private_key_jwt")
    return method


def check_redirect_uri(uri: str, *, public: bool) -> str:
    """RFC 6749 §3.1.2, RFC 9700 §2.1 and RFC 8252 §7: absolute, no fragment, https or loopback."""
    if not uri or len(uri) > MAX_URI or uri != uri.strip():
        raise InvalidInput(f"redirect URI {uri!r} is empty, too long or has surrounding spaces")
    if not _URI_CHARS.fullmatch(uri) or _BAD_PERCENT.search(uri):
        raise InvalidInput(f"redirect URI {uri!r} must be ASCII without spaces or controls"
                           " (percent-encode paths, punycode host names)")
    if "#" in uri:
        raise InvalidInput(f"redirect URI {uri!r} must not have a fragment")
    if "*" in uri:
        raise InvalidInput(f"redirect URI {uri!r} must not contain a wildcard")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidInput(f"redirect URI {uri!r} is malformed") from None
    if not parts.scheme:
        raise InvalidInput(f"redirect URI {uri!r} must be absolute")
    if parts.username or parts.password:
        raise InvalidInput(f"redirect URI {uri!r} must not carry credentials")
    if parts.scheme == "https":
        if not host:
            raise InvalidInput(f"redirect URI {uri!r} has no host")
        return uri
    if parts.scheme == "http":
        if not is_loopback_host(host):
            raise InvalidInput(f"redirect URI {uri!r} uses http on a non-loopback host")
        return uri
    if public and _PRIVATE_SCHEME.fullmatch(parts.scheme) and not parts.netloc:
        return uri  # RFC 8252 §7.1: reverse-domain private-use scheme of a native app
    raise InvalidInput(f"redirect URI {uri!r} must be https, http on loopback,"
                       " or (public clients) a reverse-domain private-use scheme")


def check_resource_uri(uri: str | None, *, institution_type: str) -> str | None:
    """RFC 8707 §2: an absolute URI without a fragment; only a resource server has one."""
    if uri is None:
        return None
    if institution_type != "resource_server":
        raise InvalidInput("only a resource_server institution's client has a resource URI")
    if not uri or len(uri) > MAX_URI or not _URI_CHARS.fullmatch(uri) or "#" in uri \
            or "?" in uri:
        raise InvalidInput(f"resource URI {uri!r} must be an ASCII absolute URI without"
                           " query or fragment")
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return uri
    raise InvalidInput(f"resource URI {uri!r} must be https (or http on a loopback host)")


def check_redirect_uris(uris: Iterable[str], *, public: bool) -> list[str]:
    """Each URI checked, duplicates dropped, at most MAX_REDIRECT_URIS."""
    unique = list(dict.fromkeys(uris))
    if len(unique) > MAX_REDIRECT_URIS:
        raise InvalidInput(f"a client may have at most {MAX_REDIRECT_URIS} redirect URIs")
    checked = [check_redirect_uri(u, public=public) for u in unique]
    if public and not checked:
        # A public client's only grant is the authorization code flow, which needs one.
        raise InvalidInput("a public client (auth method none) needs a redirect URI")
    return checked


def check_scopes(scope: str, *, auth_method: str, institution_type: str) -> list[str]:
    names = list(dict.fromkeys(scope.split()))
    if not names:
        raise InvalidInput("a client needs at least one scope")
    for name in names:
        if name not in SCOPES:
            raise InvalidInput(f"unknown scope {name!r}; one of: " + ", ".join(SCOPES))
        if auth_method == "none" and name not in PUBLIC_CLIENT_SCOPES:
            raise InvalidInput(f"scope {name!r} needs private_key_jwt client authentication")
    if "introspect" in names and institution_type != "resource_server":
        raise InvalidInput("only a resource_server institution may hold the introspect scope")
    return names


def check_jwks(raw: str | bytes | None, *, auth_method: str) -> dict[str, Any] | None:
    """Public EC P-256 keys for private_key_jwt (ES256 only); refused for public clients."""
    if auth_method == "none":
        if raw is not None:
            raise InvalidInput("a public client (auth method none) has no JWKS")
        return None
    if raw is None:
        raise InvalidInput("private_key_jwt needs --jwks FILE with the client's public keys")
    if len(raw) > MAX_JWKS_BYTES:
        raise InvalidInput(f"JWKS is larger than {MAX_JWKS_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("JWKS is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise InvalidInput('JWKS must be an object {"keys": [...]} with at least one key')
    if len(data["keys"]) > MAX_JWKS_KEYS:
        raise InvalidInput(f"JWKS may hold at most {MAX_JWKS_KEYS} keys")
    for key in data["keys"]:
        if not isinstance(key, dict):
            raise InvalidInput("each JWKS entry must be an object")
        if "d" in key:
            raise InvalidInput("JWKS holds a private key; register public keys only")
        if key.get("kty") != "EC" or key.get("crv") != "P-256":
            raise InvalidInput("JWKS keys must be EC P-256 (ES256)")
        if key.get("alg") not in (None, "ES256") or key.get("use") not in (None, "sig"):
            raise InvalidInput("JWKS keys must be for ES256 signatures")
        kid = key.get("kid")
        if not isinstance(kid, str) or not 1 <= len(kid) <= MAX_KID:
            raise InvalidInput(f"each JWKS key needs a kid: a string of 1 to {MAX_KID} characters")
        if "key_ops" in key and key["key_ops"] != ["verify"]:
            raise InvalidInput('JWKS key_ops, when present, must be ["verify"]')
        if not all(_is_p256_coordinate(key.get(c)) for c in ("x", "y")):
            # RFC 7518 §6.2.1.2: x and y are the full 32 octets; a padded or shortened
            # encoding of the same point would be a second spelling of the same key.
            raise InvalidInput("JWKS key coordinates must be 32-byte base64url values")
    try:
        KeySet.import_key_set(data)  # type: ignore[arg-type]  # checks points are on the curve
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidInput("JWKS contains an invalid key") from None
    kids = [k["kid"] for k in data["keys"]]
    if len(set(kids)) != len(kids):
        raise InvalidInput("JWKS key ids must be unique")
    return {"keys": [dict(k) for k in data["keys"]]}


def _is_p256_coordinate(value: object) -> bool:
    """Exactly 32 octets in canonical unpadded base64url (43 characters, zero trailing bits)."""
    if not isinstance(value, str) or not _B64URL_43.fullmatch(value):
        return False
    raw = base64.urlsafe_b64decode(value + "=")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == value
