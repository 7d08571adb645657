"""The admin in a real browser, for the browser tests: Debian's chromium driven by Playwright.

``chromium()`` starts the browser (one per test module), ``staff_page()``
opens a page logged in as a staff user at a given width and theme, ``shot()``
saves a screenshot under tests/artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import missing_part

# Playwright's sync API runs an event loop in this thread; Django refuses ORM
# calls from a thread with a running loop unless told it is safe, and here
# the ORM and the browser never share the loop.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
USERNAME = "staff"
PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 10_000


def chromium() -> Iterator[Any]:
    """Start chromium for a module's tests (a generator for a module-scoped fixture).

    Skips the tests (fails them under CI) when chromium or Playwright is missing.
    """
    if not os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM) is None:
        missing_part(f"chromium at {CHROMIUM} (scripts/ensure-browser.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_part("Playwright for Python (pip install playwright)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def create_staff_user(settings: Any) -> User:
    """The superuser the pages are opened as, with a fast password hasher."""
    # A fast hasher: the tests are about the admin, not about password stretching.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return User.objects.create_superuser(USERNAME, f"{USERNAME}@example.com", PASSWORD)


def staff_page(
    browser: Any,
    base_url: str,
    *,
    width: int = 1600,
    height: int = 900,
    color_scheme: str = "light",
    theme: str | None = None,
    sidebar_open: bool = True,
    by_form: bool = True,
) -> Any:
    """A new context and page, logged in as the staff user (``create_staff_user``).

    Args:
        browser: From ``chromium()``.
        base_url: The live server's URL.
        width, height: The viewport.
        color_scheme: What the system prefers (``prefers-color-scheme``).
        theme: What the admin's theme toggle stored (``"light"``, ``"dark"``,
            ``"auto"``), or None for a browser that never used it.
        sidebar_open: The admin's navigation sidebar, open by default.
        by_form: Log in through the login page; else with a session made
            by Django's test client (quicker, for tests about other pages).

    Returns:
        The page; close it with ``page.context.close()``.
    """
    context = browser.new_context(
        viewport={"width": width, "height": height},
        base_url=base_url,
        color_scheme=color_scheme,
    )
    context.set_default_timeout(TIMEOUT_MS)
    if not sidebar_open:
        context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    if theme is not None:
        context.add_init_script(f"localStorage.setItem('theme', {theme!r})")
    page = context.new_page()
    if by_form:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")
    else:
        client = Client()
        client.force_login(User.objects.get(username=USERNAME))
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
        context.add_cookies(
            [{"name": cookie.key, "value": cookie.value, "url": base_url, "httpOnly": True}]
        )
    return page


def shot(page: Any, name: str, folder: Path = ARTIFACTS) -> Path:
    """Save a full-page screenshot as ``<folder>/admin-<name>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"admin-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
