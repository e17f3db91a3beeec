"""mitmweb's Options editor, in Chromium: a value rtproxy refuses shows its reason under the field, not
only the red border mitmweb gives a refused value (optionerror.reject, internals.show_option_error)."""

from __future__ import annotations

import re

from conftest import TIMEOUT

# Importing test_browser applies its prerequisites: skip outside CI, fail inside (its autouse fixture).
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _prerequisites, async_playwright  # noqa: F401
from webapi import PASSWORD, start_mitmweb


async def test_a_refused_rt_fault_says_why_under_the_field(mitmdump):
    web, api = await start_mitmweb(mitmdump)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{api.base}/?token={PASSWORD}")
            await page.get_by_text("Options", exact=True).first.click()
            await page.get_by_text("Edit Options").click()
            row = page.locator(
                "div.form-row", has=page.locator("label.control-label", has_text=re.compile("^rt_fault$"))
            )
            field = row.locator("input")
            await field.fill("drop-joinn")  # a typo of drop-join
            await field.press("Enter")
            error = row.locator(".text-danger")
            await error.wait_for(timeout=TIMEOUT * 1000)
            assert (await error.inner_text()).startswith(
                "unknown fault 'drop-joinn' (did you mean drop-join?); known: swallow-heartbeats, delay-replies, drop-join"
            )
            assert await row.locator(".has-error input").count() == 1  # mitmweb's own red border too
            ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
            await row.screenshot(path=str(ARTIFACTS.parent / "mitmweb-option-error.png"))
            await field.fill("drop-join")
            await field.press("Enter")
            await web.wait_for(r"rt_fault is now drop-join: new connections get it")
            await error.wait_for(state="detached", timeout=TIMEOUT * 1000)  # the accepted value clears it
        finally:
            await browser.close()
