"""Drives the built-in page in headless Chromium and prints what it saw as one JSON line.

    python3 web/test/page.py BASE_URL TAG START END [SCREENSHOT.png]   (env: CHROMIUM, SETTLE_MS, TOKEN)

Uses Python's playwright (PyPI, pinned in .ci/run) with Debian's Chromium (`executable_path`, no browser
download). Opens BASE_URL/ with the window START..END (ns) set through the URL, picks TAG in the tag list,
waits for the chart to draw it and for the live figures from /metrics to show, then reports: points drawn,
series, ink on the chart's canvas, the live ingest rate text, and every page or console error (a blocked
script or a refused fetch shows up there). tests/page.rs checks the figures against the data it wrote.
"""

import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

MEASURE = """() => {
  const el = document.getElementById("chart");
  const canvas = el.querySelector("canvas");
  let ink = 0;
  if (canvas) {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) ink++;
  }
  return {
    points: Number(el.dataset.points),
    series: Number(el.dataset.series),
    ink,
    title: document.getElementById("chart-title").textContent,
    rate: document.getElementById("rate").textContent,
    status: document.getElementById("status").textContent,
    url: location.search,
  };
}"""


def main() -> int:
    if len(sys.argv) < 5:
        print("usage: python3 page.py BASE_URL TAG START END [SCREENSHOT.png]", file=sys.stderr)
        return 2
    base, tag, start, end = sys.argv[1:5]
    shot = sys.argv[5] if len(sys.argv) > 5 else None
    errors: list[str] = []
    phases: dict[str, int] = {}
    t0 = time.monotonic()

    def mark(name: str) -> None:
        phases[name] = int((time.monotonic() - t0) * 1000)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 820})
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on(
                "console",
                lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
            mark("launched")
            page.goto(f"{base}/?window=custom&start={start}&end={end}")
            mark("loaded")
            token = os.environ.get("TOKEN")
            if token:
                # An engine with --read-token-file: the page asks for the token, then reloads with it.
                page.wait_for_selector("#auth:not([hidden])", timeout=60000)
                page.fill("#token", token)
                with page.expect_navigation():
                    page.dispatch_event("#token", "change")
                errors.clear()  # the 401s before the token was given are expected
                mark("token")
            # The tag list comes from /tags; pick ours as a user would.
            page.wait_for_selector(f'#tag option[value="{tag}"]', state="attached", timeout=60000)
            mark("listed")
            page.select_option("#tag", tag)
            page.wait_for_selector(f'#chart[data-tag="{tag}"]', timeout=60000)
            mark("drawn")
            # The live figures need two scrapes of /metrics.
            page.wait_for_function(
                '() => document.getElementById("rate").textContent.includes("rec/s")',
                timeout=60000,
            )
            mark("live")
            seen = page.evaluate(MEASURE)
            if shot:
                # SETTLE_MS: let the live chart gather points before the picture (the README's screenshot).
                page.wait_for_timeout(int(os.environ.get("SETTLE_MS", "0")))
                page.screenshot(path=shot)
            print(json.dumps({**seen, "errors": errors, "ms": phases}), flush=True)
            return 0
        except Exception as e:  # report what was seen so far with the failure
            print(f"page test: {e}\nseen so far: {json.dumps({'errors': errors, 'ms': phases})}", file=sys.stderr)
            return 1
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
