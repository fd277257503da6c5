"""A real browser for the tests: Debian's headless Chromium driven by Playwright.

Playwright's own browser download is never used (it cannot reach its servers here): it
drives the `chromium` that scripts/ensure-system-packages installs. Selectors are
Playwright's CSS, which pierces open shadow roots, so `.wallet .balance` finds the card's
element however deep Home Assistant nests it in custom elements.

    async with headless_chromium(artifacts=tmp_path) as browser:
        page = await browser.new_page()
        await page.open(url)
        await page.wait_for(".wallet .balance")
        await page.click("button.accept")
        await page.screenshot("card.png", also=[Path("docs/card.png")])
        page.assert_no_console_errors()
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Route,
    async_playwright,
)
from playwright.async_api import TimeoutError as PlaywrightTimeout

# The flags ../shared/TOOLCHAIN.md names: no sandbox (root), no GPU, nothing reaching out.
# Playwright adds --headless and a fresh temporary --user-data-dir itself.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# How long to wait for a page or an element, in seconds (`within=`).
DEFAULT_TIMEOUT_S = 15.0


def chromium_path() -> str:
    """Where Debian's Chromium is; a clear message when it is not installed."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if path is None:
        raise RuntimeError("chromium is not installed: run scripts/ensure-system-packages")
    return path


@dataclass
class BrowserPage:
    """One tab, with what went wrong in it collected as it happens."""

    page: Page
    artifacts: Path | None
    # console.error() calls and uncaught exceptions, as "kind: text (where)".
    console_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        text = f"{message.type}: {message.text}"
        self.console.append(text)
        if message.type == "error":
            location = message.location
            self.console_errors.append(
                f"{text} ({location.get('url')}:{location.get('lineNumber')})"
            )

    def _on_page_error(self, error: Error) -> None:
        # A thrown non-Error (an object) only says "Object": its stack says where.
        where = (error.stack or "").strip().splitlines()[1:3]
        self.console_errors.append(" ".join([f"pageerror: {error}", *map(str.strip, where)]))

    async def open(self, url: str, *, within: float = DEFAULT_TIMEOUT_S) -> None:
        """Go to `url` and wait for its load event."""
        await self.page.goto(url, wait_until="load", timeout=within * 1000)

    async def delay(self, url_glob: str, seconds: float) -> None:
        """Hold back every response whose URL matches `url_glob` by `seconds`: a slow
        server or a large script, on demand."""

        async def held(route: Route) -> None:
            await asyncio.sleep(seconds)
            await route.continue_()

        await self.page.route(url_glob, held)

    def find(self, selector: str, *, text: str | re.Pattern[str] | None = None) -> Locator:
        """Every element matching `selector` (through shadow roots), optionally with `text`."""
        locator = self.page.locator(selector)
        return locator if text is None else locator.filter(has_text=text)

    async def wait_for(
        self,
        selector: str,
        *,
        text: str | re.Pattern[str] | None = None,
        state: Literal["attached", "detached", "hidden", "visible"] = "visible",
        within: float = DEFAULT_TIMEOUT_S,
    ) -> Locator:
        """The first element matching, once it is in `state` (visible, attached, hidden...).

        If it never is, the page as it was (a screenshot and its console) is kept with the
        artifacts and the console's last lines are in the error: a wait that fails on a CI
        machine must say what the browser showed instead."""
        locator = self.find(selector, text=text).first
        try:
            await locator.wait_for(state=state, timeout=within * 1000)
        except PlaywrightTimeout as exc:
            raise AssertionError(await self._what_it_showed(selector, state, within)) from exc
        return locator

    async def _what_it_showed(self, selector: str, state: str, within: float) -> str:
        lines = [f"{selector!r} not {state} within {within:g} s on {self.page.url}"]
        if self.artifacts is not None:
            taken = len(list(self.artifacts.glob("timeout-*")))
            try:
                lines.append(f"screenshot: {await self.screenshot(f'timeout-{taken}.png')}")
            except Error as exc:
                lines.append(f"no screenshot: {exc}")
        lines.append("the console's last lines:")
        lines.extend(f"  {line}" for line in self.console[-20:] or ["(nothing)"])
        return "\n".join(lines)

    async def click(
        self,
        selector: str,
        *,
        text: str | re.Pattern[str] | None = None,
        within: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Click the first element matching, once it is visible and enabled."""
        await self.find(selector, text=text).first.click(timeout=within * 1000)

    async def fill(self, selector: str, value: str, *, within: float = DEFAULT_TIMEOUT_S) -> None:
        """Type `value` into the first input matching (replacing what it held)."""
        await self.find(selector).first.fill(value, timeout=within * 1000)

    async def texts(self, selector: str) -> list[str]:
        """The visible text of every element matching, whitespace collapsed."""
        raw = await self.find(selector).all_inner_texts()
        return [" ".join(text.split()) for text in raw]

    async def count(self, selector: str) -> int:
        """How many elements match now."""
        return await self.find(selector).count()

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        """Run JavaScript in the page (`script` is an expression or a function of `arg`)."""
        return await self.page.evaluate(script, arg)

    async def screenshot(
        self, name: str, *, selector: str | None = None, also: Iterable[Path] = ()
    ) -> Path:
        """Save a PNG of the page (or of one element) as an artifact and at `also`."""
        directory = self.artifacts or Path.cwd()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        if selector is None:
            await self.page.screenshot(path=str(path), full_page=True)
        else:
            await self.find(selector).first.screenshot(path=str(path))
        for copy in also:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        return path

    def assert_no_console_errors(self, ignore: Sequence[str | re.Pattern[str]] = ()) -> None:
        """Fail with every console error and uncaught exception not matched by `ignore`."""
        left = [
            error
            for error in self.console_errors
            if not any(re.search(pattern, error) for pattern in ignore)
        ]
        assert not left, "errors in the browser console:\n" + "\n".join(left)


@dataclass
class HeadlessChromium:
    """A running headless Chromium; its pages' artifacts go to `artifacts`."""

    browser: Browser
    artifacts: Path | None

    async def new_page(
        self,
        *,
        width: int = 1280,
        height: int = 900,
        scale: float = 1.0,
        locale: str = "en-US",
        timezone: str | None = None,
        frozen_at: float | None = None,
    ) -> BrowserPage:
        """A fresh tab in its own context (no cookies or storage shared with others).

        `frozen_at` (a UNIX time) stops the page's clock there, with `timezone`: for
        screenshots that come out the same on every run.
        """
        context = await self.browser.new_context(
            viewport={"width": width, "height": height},
            device_scale_factor=scale,
            locale=locale,
            timezone_id=timezone,
        )
        page = await context.new_page()
        if frozen_at is not None:
            await page.clock.set_fixed_time(frozen_at)
        return BrowserPage(page, self.artifacts)


@asynccontextmanager
async def headless_chromium(artifacts: Path | None = None) -> AsyncIterator[HeadlessChromium]:
    """Start Debian's Chromium headless; stop it (and every page) on leaving."""
    async with async_playwright() as playwright:
        try:
            browser = await playwright.chromium.launch(
                executable_path=chromium_path(), args=list(CHROMIUM_FLAGS), headless=True
            )
        except Error as exc:
            raise RuntimeError(f"could not start {chromium_path()}: {exc}") from exc
        try:
            yield HeadlessChromium(browser, artifacts)
        finally:
            await browser.close()
