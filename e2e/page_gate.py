"""The checks every page passes in the journeys: axe-core finds no serious or critical violation,
nothing in the main content runs off the side of the screen, no table column is clipped on a
desktop, and a screenshot is kept (e2e/artifacts/pages/) to be looked at."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SIZES = {"desktop": DESKTOP, "phone": PHONE}

# Elements whose right or left edge is outside the viewport, outside any container that says it
# scrolls sideways (data-scrolls="x", the table regions) and not visually hidden on purpose.
_OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('main *, header *, footer *')) {
    if (el.closest('[data-scrolls="x"]') && !el.matches('[data-scrolls="x"]')) continue;
    if (el.closest('.visually-hidden, .skip-link, [hidden], details:not([open]) > :not(summary)')) continue;
    const style = getComputedStyle(el);
    if (style.position === 'fixed' || style.visibility === 'hidden' || style.display === 'none') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.right > width + 0.5 || box.left < -0.5) {
      out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')} [${Math.round(box.left)}, ${Math.round(box.right)}] of ${width}`);
    }
  }
  return {page: document.documentElement.scrollWidth, viewport: width, out: out.slice(0, 10)};
}"""

# At desktop size a table region may scroll, but must not have to: every column shows.
_CLIPPED_TABLES = """() => [...document.querySelectorAll('[data-scrolls="x"]')]
  .filter(el => el.scrollWidth > el.clientWidth + 1)
  .map(el => `${el.getAttribute('aria-label') || el.className}: ${el.scrollWidth} > ${el.clientWidth}`)"""


def _axe(page: Page, axe_source: str) -> list[dict[str, object]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)  # evaluate, not a <script>: no CSP or network involved
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def describe(violations: list[dict[str, object]]) -> str:
    lines = []
    for v in violations:
        nodes = v["nodes"]  # type: ignore[index]
        targets = ", ".join(json.dumps(n["target"]) for n in nodes[:4])  # type: ignore[index]
        lines.append(f"{v['impact']} {v['id']}: {v['help']} ({len(nodes)}×: {targets})")  # type: ignore[arg-type]
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def gate(page: Page, name: str, size: str, axe_source: str, artifacts: Path, scheme: str = "light") -> None:
    """Runs every check on the page as it is now; fails naming each problem."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling, .htmx-swapping')")
    shots = artifacts / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shots / f"{slug(name)}-{size}-{scheme}.png", full_page=True)
    problems = []
    violations = _axe(page, axe_source)
    if violations:
        problems.append("axe:\n" + describe(violations))
    overflow = page.evaluate(_OVERFLOW)
    if overflow["out"] or overflow["page"] > overflow["viewport"]:
        problems.append(f"horizontal overflow (page {overflow['page']} px in {overflow['viewport']} px): " + "; ".join(overflow["out"]))
    if size == "desktop":
        clipped = page.evaluate(_CLIPPED_TABLES)
        if clipped:
            problems.append("tables wider than their region: " + "; ".join(clipped))
    assert not problems, f"{name} at {size} ({scheme}):\n" + "\n".join(problems)
