"""The report screenshots in docs/: report.html of the default build in headless Chromium, desktop and phone.

1. `edgekit build --target rpi4` (digits-cnn) into a temporary folder, or an existing build folder given as
   the argument;
2. `edgekit report BUILD_DIR`: report.html and plots/*.png from the folder's report.json;
3. headless Chromium (Debian's `chromium` package) opens the page from a file:// URL at 1280 px (desktop) and
   390 px (phone) wide, several times each; the window is taller than the page and each screenshot is cropped
   where the page ends, then reduced to a 128-colour palette (the page is flat colours) so that it stays small;
4. docs/report-desktop.png and docs/report-phone.png (shown by docs/report.md), and
   benchmarks/report_screenshots.json: the seconds of each step, the page's and the screenshots' sizes, and
   Chromium's version.

    python benchmarks/report_screenshots.py [BUILD_DIR]   # about a minute with the build, seconds without

Chromium is not needed by the tests (tests/test_report_html.py asserts the same properties on the page itself).
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
DOCS = HERE.parent / "docs"
EDGEKIT = [sys.executable, "-m", "edgekit"]
# name -> (window width, window height): taller than the page, since Chromium's --screenshot captures the window
WIDTHS = {"desktop": (1280, 9000), "phone": (390, 16000)}
RENDERS = 3  # the first launch pays for a cold start; the median is the figure
MAX_BYTES = 300_000  # docs/ stays light: a screenshot larger than this fails the script


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


def screenshot(browser: str, page: Path, out: Path, width: int, height: int) -> float:
    """Seconds Chromium takes to start, load the page, lay it out and write the PNG."""
    _, seconds = run(browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                     "--force-device-scale-factor=1", f"--screenshot={out}", f"--window-size={width},{height}",
                     page.resolve().as_uri())
    return seconds


def crop_and_shrink(png: Path, out: Path) -> tuple[list[int], list[int]]:
    """Cut the empty window below the page's end (rows of the page's background colour), keeping a margin, and
    write it to `out` as a 128-colour palette PNG."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
    background = rgb.getpixel((rgb.width - 1, rgb.height - 1))
    pixels = rgb.load()
    bottom = rgb.height
    while bottom > 1 and all(pixels[x, bottom - 1] == background for x in range(0, rgb.width, 4)):
        bottom -= 1
    cropped = rgb.crop((0, 0, rgb.width, min(bottom + 24, rgb.height)))
    cropped.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
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
        report = json.loads((folder / "report.json").read_text())
        figures.update({
            "build": f"{report['recipe']} for {report['target']}" + ("" if args.build_dir else " (built here)"),
            "chromium": run(browser, "--version")[0].strip(),
            "page_bytes": page.stat().st_size,
            "plots": sorted(p.name for p in (folder / "plots").glob("*.png")),
            "screenshots": {},
        })
        for name, (width, height) in WIDTHS.items():
            shots = Path(scratch) / name
            shots.mkdir()
            seconds = [screenshot(browser, page, shots / f"{i}.png", width, height) for i in range(RENDERS)]
            target = DOCS / f"report-{name}.png"
            window, cropped = crop_and_shrink(shots / "0.png", target)
            if target.stat().st_size > MAX_BYTES:
                raise SystemExit(f"{target}: {target.stat().st_size:,} bytes, over {MAX_BYTES:,}")
            figures["screenshots"][name] = {
                "path": str(target.relative_to(HERE.parent)),
                "window_px": window,
                "px": cropped,
                "bytes": target.stat().st_size,
                "render_seconds": round(statistics.median(seconds), 3),
                "render_seconds_each": [round(s, 3) for s in seconds],
            }
        figures["render_method"] = (f"chromium --headless --disable-gpu --no-sandbox --force-device-scale-factor=1 "
                                    f"--screenshot --window-size=WIDTH,HEIGHT file://.../report.html: process start "
                                    f"to PNG written, median of {RENDERS} launches")
    for name in ("build_seconds", "report_seconds"):
        if name in figures:
            figures[name] = round(figures[name], 2)
    (HERE / "report_screenshots.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
