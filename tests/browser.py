"""Render an HTML file in headless Chromium (Debian's ``chromium``) and measure it from inside the page.

``measure(html_path, width)`` loads a copy of the page with a small script added that, once the page has loaded,
writes what it measured (images decoded, page width, section positions, text of the headline) into the DOM as
JSON; Chromium's ``--dump-dom`` prints the DOM and the JSON is read back. ``screenshot`` saves a PNG.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

MEASURE = """
<script>
window.addEventListener('load', () => {
  const top = (el) => el ? el.getBoundingClientRect().top + window.scrollY : null;
  const imgs = Array.from(document.images);
  const tables = Array.from(document.querySelectorAll('table'));
  const result = {
    images: imgs.length,
    decoded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
    shrunk: imgs.filter((i) => i.getBoundingClientRect().width + 1 < i.naturalWidth).map((i) => i.alt),
    inner_width: window.innerWidth,
    scroll_width: document.documentElement.scrollWidth,
    wide_tables: tables.filter((t) => t.getBoundingClientRect().right > window.innerWidth).map((t) => t.className),
    headline: (document.getElementById('headline') || {}).innerText || '',
    unplaced_top: top(document.getElementById('unplaced')),
    plots_top: top(document.getElementById('plots')),
  };
  const out = document.createElement('pre');
  out.id = 'vplan-measure';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def measure(html_path: Path, width: int = 1400, height: int = 900) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"),
                        encoding="utf-8")
        result = _run([f"--window-size={width},{height}", "--virtual-time-budget=10000", "--dump-dom",
                       page.as_uri()], Path(tmp) / "profile")
    found = re.search(r'<pre id="vplan-measure">(.*?)</pre>', result.stdout, re.S)
    if not found:
        raise RuntimeError(f"chromium printed no measurement (exit {result.returncode}): {result.stderr[-2000:]}")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


def screenshot(html_path: Path, png: Path, width: int = 1400, height: int = 2400) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = _run([f"--window-size={width},{height}", f"--screenshot={png}", html_path.as_uri()],
                      Path(tmp) / "profile")
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")
    return png
