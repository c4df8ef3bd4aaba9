"""A Snakemake report opened in headless Chromium (Debian's package, ``scripts/chromium.sh``) through
Playwright, the way a reader clicks through it: each figure shown and loaded, each table's link carrying
the file, each caption there, and no JavaScript error on the way."""

from __future__ import annotations

import base64
import subprocess
import urllib.parse
from pathlib import Path

from workflow_kit import REPO, time_limit

SCRIPT = REPO / "scripts" / "chromium.sh"


def chromium() -> str:
    """The browser's executable, installed first where it is missing (root on Debian, as CI is)."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=time_limit(600)
    )
    assert proc.returncode == 0, f"scripts/chromium.sh install failed:\n{proc.stderr[-2000:]}"
    return subprocess.run(
        ["bash", str(SCRIPT), "path"], capture_output=True, text=True, check=True
    ).stdout.strip()


def data_uri_bytes(uri: str) -> bytes:
    """The payload of a ``data:...;base64,...`` URI (the report embeds every file so)."""
    header, _, payload = uri.partition(",")
    assert header.endswith(";base64"), header[:80]
    return base64.b64decode(urllib.parse.unquote(payload))


def caption_start(kind: str, name: str) -> str:
    """The first words of the caption file the report rule names (workflow/report/)."""
    text = (REPO / "workflow" / "report" / f"{kind}_{name}.rst").read_text()
    return " ".join(text.split()[:6])


def check_report(report: Path, figures: list[str], tables: list[str]) -> None:
    """Every listed figure shows its PNG (decoded, the file's bytes) and every table's link carries its
    Markdown file, each with its caption, under the report's Figures and Tables categories."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)

        def row(category: str, path: str):
            """The category's row of ``path``, from the report's start page (as a reader gets there)."""
            page.goto(report.as_uri())
            page.get_by_text(category, exact=True).first.click()
            found = page.locator("tbody tr").filter(has=page.get_by_text(path, exact=True))
            assert found.count() == 1, f"{category}: no row for {path}"
            return found

        for category, kind, names, ext in (
            ("Figures", "figure", figures, "png"),
            ("Tables", "table", tables, "md"),
        ):
            for name in names:
                path = f"results/{category.lower()}/{name}.{ext}"
                file = (report.parent / path).read_bytes()
                shown = row(category, path).locator("a[iconname=eye]")
                shown.click()
                if kind == "figure":
                    image = page.locator(f"img[src*='filename={name}.png']")
                    image.wait_for(timeout=10_000)
                    loaded = image.evaluate("e => e.complete && e.naturalWidth > 0 && e.naturalHeight > 0")
                    assert loaded, f"{path}: broken image"
                    assert data_uri_bytes(image.get_attribute("src")) == file, f"{path}: not the file's bytes"
                else:  # the report offers Markdown as a download link
                    assert data_uri_bytes(shown.get_attribute("href")) == file, (
                        f"{path}: not the file's bytes"
                    )
                row(category, path).locator("a[iconname=information-circle]").click()
                page.get_by_text(caption_start(kind, name)).first.wait_for(timeout=10_000)
        browser.close()
    assert not errors, errors
