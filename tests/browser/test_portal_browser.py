"""The portal in a real browser: card login, grant, narrow, revoke, keyboard-only use, the
language switch, and a forged form refused."""

from __future__ import annotations

import re

import pytest
from browser_support import card_login
from browser_support import respond
from browser_support import shot
from playwright.sync_api import Page
from playwright.sync_api import expect

pytestmark = pytest.mark.slow


def clinic(page: Page) -> str:
    value = page.locator("#institution option", has_text="Demo Clinic").get_attribute("value")
    assert value
    return value


def test_card_login_grant_narrow_revoke(page: Page, service):
    card_login(page, service, "/portal")
    expect(page.locator("h1")).to_have_text("わたしの同意")
    page.get_by_role("link", name="同意する").first.click()
    page.get_by_label("機関").select_option(clinic(page))
    page.get_by_label("目的").select_option("treatment_referral")
    page.get_by_label("薬剤情報").check()
    page.get_by_label("検査結果").check()
    expect(page.locator("#cat-mental_health")).not_to_be_checked()
    page.get_by_label("終了日").fill("2027-06-30")
    shot(page, "portal-grant")
    page.get_by_role("button", name="内容を確認する").click()
    expect(page.locator("h1")).to_have_text("新しい同意の確認")
    expect(page.locator(".change")).to_contain_text("2027年6月30日")
    expect(page.locator(".change")).to_contain_text("薬剤情報")
    shot(page, "portal-confirm")
    page.get_by_role("button", name="この内容で同意する").click()
    expect(page.get_by_role("status")).to_contain_text("同意しました")
    consent = page.locator("article.consent", has_text="検査結果").first
    expect(consent).to_contain_text("有効")
    shot(page, "portal-consents")

    consent.get_by_role("link", name="範囲を狭める").click()
    page.get_by_label("検査結果").uncheck()
    page.get_by_role("button", name="内容を確認する").click()
    expect(page.locator(".removed")).to_contain_text("検査結果")
    page.get_by_role("button", name="この内容で範囲を狭める").click()
    expect(page.get_by_role("status")).to_contain_text("範囲を狭めました")

    consent = page.locator("article.consent.status-active", has_text="薬剤情報").first
    consent_id = consent.get_attribute("id")
    consent.get_by_role("link", name="撤回する").click()
    expect(page.locator("h1")).to_have_text("同意の撤回の確認")
    page.get_by_role("button", name="この同意を撤回する").click()
    expect(page.locator(f"#{consent_id}")).to_contain_text("撤回済み")
    page.get_by_role("link", name="アクセス履歴").click()
    expect(page.locator("table.history")).to_contain_text("同意を撤回")
    shot(page, "portal-history")


def test_grant_form_by_keyboard_only(page: Page, service):
    card_login(page, service, "/portal/grant", card="jiro.json")
    page.locator("#institution").focus()
    order = []
    for _ in range(4):
        order.append(page.evaluate("document.activeElement.id"))
        page.keyboard.press("Tab")
    assert order == ["institution", "purpose", "cat-qualification", "cat-medication"]
    page.locator("#institution").focus()
    page.keyboard.press("ArrowDown")  # the first institution in the list
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # 受診中の診療: treatment during a visit, no end date
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # 薬剤情報
    focused = page.locator(":focus")
    expect(focused).to_have_id("cat-medication")
    outline = focused.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"  # the focus is visible
    # on to the button: past the other boxes and the date
    while page.evaluate("document.activeElement.tagName") != "BUTTON":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("新しい同意の確認")
    page.keyboard.press("Tab")
    while page.evaluate("document.activeElement.getAttribute('name')") != "confirm":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("同意しました")


def test_language_switch_without_javascript(chromium, service):
    context = chromium.new_context(locale="ja-JP", java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(service.base + "/portal")
        shot(page, "login")
        respond(page, service)
        page.get_by_role("link", name=re.compile("カードで応答したら続ける")).click()
        expect(page.locator("h1")).to_have_text("わたしの同意")
        assert page.locator("html").get_attribute("lang") == "ja"
        page.get_by_role("button", name="English").click()
        expect(page.locator("h1")).to_have_text("My consents")
        assert page.locator("html").get_attribute("lang") == "en"
        shot(page, "portal-english")
        page.get_by_role("button", name="日本語").click()
        expect(page.locator("h1")).to_have_text("わたしの同意")
    finally:
        context.close()


def test_a_forged_csrf_token_is_refused(page: Page, service):
    card_login(page, service, "/portal/grant")
    page.get_by_label("機関").select_option(clinic(page))
    page.get_by_label("目的").select_option("treatment_visit")
    page.get_by_label("薬剤情報").check()
    page.get_by_role("button", name="内容を確認する").click()
    page.locator("form[action='/portal/apply'] input[name=csrf]").evaluate(
        "e => { e.value = 'forged' }")
    page.get_by_role("button", name="この内容で同意する").click()
    expect(page.locator("h1")).to_have_text("変更していません")
    expect(page.get_by_role("alert")).to_contain_text("何も変更していません")


def test_the_portal_reads_on_a_phone(page: Page, service):
    page.set_viewport_size({"width": 375, "height": 740})
    card_login(page, service, "/portal")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing wider than the screen
    shot(page, "portal-phone")


CONTRAST = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const worst = [];
  const texts = "h1, h2, h3, p, li, dt, dd, a, button, label, legend, td, th, strong, span";
  for (const el of document.querySelectorAll(texts)) {
    if (!el.textContent.trim() || el.offsetParent === null) continue;
    const fg = lum(rgb(getComputedStyle(el).color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) worst.push([el.tagName, el.textContent.trim().slice(0, 30), ratio]);
  }
  return worst;
}
"""


def test_text_contrast_meets_wcag_aa(page: Page, service):
    card_login(page, service, "/portal")
    for path in ("/portal", "/portal/grant", "/portal/history", "/portal/devices"):
        page.goto(service.base + path)
        assert page.evaluate(CONTRAST) == [], path
