"""Issue 8's acceptance: report.html of the default build, rendered in headless Chromium.

1. `edgekit build --target rpi4` (digits-cnn) into a temporary folder, or an existing build folder given as
   the argument;
2. `edgekit report BUILD_DIR`: report.html and plots/*.png from the folder's report.json;
3. headless Chromium (Debian's `chromium` package) opens the page from a file:// URL and screenshots it at
   1280 px wide, several times; the window is taller than the page and the screenshot is cropped where the
   page ends;
4. benchmarks/render_report.json: the seconds of each step, the page's and the screenshot's sizes, and
   Chromium's version; the screenshot is kept as docs/report-example.png.

    python benchmarks/render_report.py [BUILD_DIR]   # about a minute with the build, seconds without
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit.report.text import host

HERE = Path(__file__).resolve().parent
SCREENSHOT = HERE.parent / "docs" / "report-example.png"
EDGEKIT = [sys.executable, "-m", "edgekit"]
WIDTH, WINDOW_HEIGHT = 1280, 9000  # taller than the page: Chromium's --screenshot captures the window only
RENDERS = 3  # the first launch pays for a cold start; the median is the figure


def run(*command: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout, seconds


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("chromium is not installed; install Debian's package with `apt-get install -y chromium`")
    return found


def screenshot(browser: str, page: Path, out: Path) -> float:
    """Seconds Chromium takes to start, load the page, lay it out and write the PNG."""
    _, seconds = run(browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                     f"--screenshot={out}", f"--window-size={WIDTH},{WINDOW_HEIGHT}", page.resolve().as_uri())
    return seconds


def crop_to_page(png: Path) -> tuple[list[int], list[int]]:
    """Cut the empty window below the page's end (rows of the page's background colour), keeping a margin."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
    background = rgb.getpixel((rgb.width - 1, rgb.height - 1))
    columns = rgb.width
    bottom = rgb.height
    pixels = rgb.load()
    while bottom > 1 and all(pixels[x, bottom - 1] == background for x in range(0, columns, 4)):
        bottom -= 1
    cropped = rgb.crop((0, 0, columns, min(bottom + 24, rgb.height)))
    cropped.save(png, optimize=True)
    return [rgb.width, rgb.height], [cropped.width, cropped.height]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", type=Path, help="an existing build folder (default: build one)")
    args = parser.parse_args()
    browser = chromium()
    figures: dict = {"host": host()}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.build_dir
        if folder is None:
            out = Path(scratch) / "build"
            _, figures["build_seconds"] = run(*EDGEKIT, "build", "--target", "rpi4", "--out", str(out))
            folder = out / "digits-cnn-rpi4"
        printed, figures["report_seconds"] = run(*EDGEKIT, "report", str(folder))
        page = Path(printed.strip())
        shots = Path(scratch) / "shots"
        shots.mkdir()
        seconds = [screenshot(browser, page, shots / f"{i}.png") for i in range(RENDERS)]
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "0.png", SCREENSHOT)
        window, cropped = crop_to_page(SCREENSHOT)
        report = json.loads((folder / "report.json").read_text())
        figures.update({
            "build": f"{report['recipe']} for {report['target']}" + ("" if args.build_dir else " (built here)"),
            "chromium": run(browser, "--version")[0].strip(),
            "render_seconds": round(statistics.median(seconds), 3),
            "render_seconds_each": [round(s, 3) for s in seconds],
            "render_method": f"chromium --headless --disable-gpu --no-sandbox --screenshot --window-size={WIDTH},"
                             f"{WINDOW_HEIGHT} file://.../report.html: process start to PNG written, median of "
                             f"{RENDERS} launches",
            "page_bytes": page.stat().st_size,
            "plots": sorted(p.name for p in (folder / "plots").glob("*.png")),
            "screenshot_window_px": window,
            "screenshot_px": cropped,
            "screenshot_bytes": SCREENSHOT.stat().st_size,
            "screenshot": str(SCREENSHOT.relative_to(HERE.parent)),
        })
    for name in ("build_seconds", "report_seconds"):
        if name in figures:
            figures[name] = round(figures[name], 2)
    (HERE / "render_report.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
