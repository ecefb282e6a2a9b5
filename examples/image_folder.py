"""Bring your own images: a folder with one subfolder of images per class, built into an int8 model.

    python examples/image_folder.py --folder my_images/    # your images: my_images/cat/*.jpg, my_images/dog/*.png, ...
    python examples/image_folder.py                        # writes a folder of generated PNGs first; about 20 s
    python examples/image_folder.py --quick                # fewer images and epochs, for a smoke test

The recipe is image_folder.toml (a small CNN on 32x32 RGB inputs); edgekit reads the folder as `--data FOLDER`
does: classes are the subfolder names in sorted order, every image is decoded, converted to RGB and resized to
32x32, and a fixed stratified split holds out test and validation images. The command-line equivalent:

    edgekit build --recipe examples/image_folder.toml --data my_images/ --target rpi4
"""

from __future__ import annotations

import argparse
import logging
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from edgekit import recipes, targets
from edgekit.build import build
from edgekit.errors import run_or_exit

RECIPE = Path(__file__).resolve().parent / "image_folder.toml"
CLASSES = ("checks", "horizontal", "vertical")  # stripe patterns, in random colours, periods and sizes


def write_png(path: Path, pixels: np.ndarray) -> None:
    """An 8-bit RGB PNG from (height, width, 3) uint8 pixels, with the standard library only."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))  # filter byte 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def write_example_images(folder: Path, per_class: int, seed: int = 0) -> Path:
    """folder/<class>/NNN.png: stripes or checks with a random period, phase, colour pair and size, plus noise."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            height, width = rng.integers(28, 65, size=2)
            period = rng.uniform(6, 14)
            rows, columns = np.mgrid[:height, :width] + rng.uniform(0, period, size=(2, 1, 1))
            horizontal, vertical = np.sin(2 * np.pi * rows / period) > 0, np.sin(2 * np.pi * columns / period) > 0
            mask = {"horizontal": horizontal, "vertical": vertical, "checks": horizontal ^ vertical}[name]
            light, dark = rng.uniform(150, 255, 3), rng.uniform(0, 100, 3)
            pixels = np.where(mask[..., None], light, dark) + rng.normal(0, 12, (height, width, 3))
            write_png(folder / name / f"{i:03d}.png", np.clip(pixels, 0, 255).astype(np.uint8))
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=None,
                        help="your images, one subfolder per class; default: a generated folder")
    parser.add_argument("--target", default="rpi4", help="a built-in target name or a profile's path")
    parser.add_argument("--out", type=Path, default=Path("build"), help="parent of the build folder")
    parser.add_argument("--quick", action="store_true", help="fewer generated images and epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    recipe = recipes.load(RECIPE)
    if args.quick:
        # A few dozen test images, each worth several points of accuracy: the int8 guard goes from 2 points to 10.
        recipe = recipe.with_changes(train={"epochs": 6},
                                     optimize={"pruning_epochs": 1, "qat_epochs": 1, "max_drop": 10.0})
    folder = args.folder
    if folder is None:
        folder = write_example_images(Path(tempfile.mkdtemp(prefix="edgekit-images-")), 40 if args.quick else 100)
        print(f"wrote {len(CLASSES)} class folders of generated PNGs to {folder}")

    result = build(recipe, targets.load(args.target), args.out, runs=20 if args.quick else 200,
                   data_spec=str(folder))
    report, dataset = result.report, result.report["dataset"]
    labels = (result.directory / "labels.txt").read_text().split()
    resize = dataset["preprocessing"].get("resize")
    print(f"{dataset['name']}: classes {', '.join(labels)}; {dataset['train']} train / {dataset['val']} validation "
          f"/ {dataset['test']} test images"
          + (f", resized to {'x'.join(map(str, resize['size']))}" if resize else "")
          + (f", {dataset['skipped']} undecodable files skipped" if dataset["skipped"] else ""))
    for variant in report["variants"]:
        print(f"  {variant['name']:<8} {variant['size_bytes']:>9,} bytes, sparsity {variant['sparsity']:5.1%}, "
              f"test accuracy {variant['accuracy']:.4f}, host median {variant['latency_ms']['median']:.3f} ms")
    print(f"ship {report['selected']}: {report['selection_reason']}")
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    for check in selected["fit"]["checks"]:
        print(f"  {check['budget']:<9} {check['summary']}")
    print(f"build folder: {result.directory} (report.md, labels.txt, manifest.json)")
    return report


if __name__ == "__main__":
    run_or_exit(main)  # the one-line error and exit code `edgekit` itself would give
