"""A newcomer's path over real HTTP: serve the demo, open /login, answer with the card app."""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from test_serve import AUTHZ
from test_serve import serving
from tests_support import free_port

pytestmark = pytest.mark.slow


def browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def card_link(page: str) -> str:
    return html.unescape(re.search(r'data-card-link="([^"]+)"', page).group(1))


def test_demo_card_logs_in_through_the_login_page(tmp_path: Path) -> None:
    port = free_port()
    env = {"AUTHZ_INSTANCE_PATH": str(tmp_path / "instance"), "AUTHZ_DEMO": "1"}
    with serving(env, port):
        base = f"http://127.0.0.1:{port}"
        person = browser()
        page = person.open(f"{base}/login", timeout=10).read().decode()
        link = card_link(page)
        assert link.startswith(f"{base}/jpki/transactions/")
        card = tmp_path / "instance" / "demo-cards" / "hanako.json"
        answered = subprocess.run(
            [AUTHZ, "card", "respond", "--card", str(card), "--pin", "1234",
             "--password", "DEMO2026", "--link", link],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert answered.returncode == 0, answered.stdout + answered.stderr
        code = re.search(r"code=(\d{6})", link).group(1)
        assert code in answered.stdout  # the card app shows the code to compare
        account = person.open(f"{base}/login", timeout=10)
        assert account.url == f"{base}/account"
        text = account.read().decode()
        assert "見本 花子" in text

        # a card issued with the CLI works the same way, for someone else's browser
        other_card = tmp_path / "new.json"
        issued = subprocess.run(
            [AUTHZ, "card", "issue", "--name", "試験 一郎", "--birthdate", "1990-01-01",
             "--gender", "male", "--address", "北海道札幌市見本区一丁目", "--pin", "4321",
             "--password", "TEST1234", "--out", str(other_card)],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert issued.returncode == 0, issued.stderr
        second = browser()
        link = card_link(second.open(f"{base}/login", timeout=10).read().decode())
        wrong_pin = subprocess.run(
            [AUTHZ, "card", "respond", "--card", str(other_card), "--pin", "0000",
             "--password", "TEST1234", "--link", link],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert wrong_pin.returncode == 1  # the card refuses; the service never sees the PIN
        answered = subprocess.run(
            [AUTHZ, "card", "respond", "--card", str(other_card), "--pin", "4321",
             "--password", "TEST1234", "--link", link],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert "試験 一郎" in second.open(f"{base}/login", timeout=10).read().decode()
