"""Bring your own audio clips: a folder with one subfolder of .wav clips per class, as a keyword spotter for a
microcontroller.

    python examples/audio_clips.py --folder my_clips/    # your clips: my_clips/yes/*.wav, my_clips/no/*.wav, ...
    python examples/audio_clips.py                       # writes a folder of generated clips first; about 45 s
    python examples/audio_clips.py --quick               # fewer clips, a narrower network, for a smoke test

edgekit reads the folder as `--data FOLDER` does: each clip is resampled to 16 kHz, made mono, padded or cut to
1 s and turned into 49x10 MFCC features as the MLPerf Tiny keyword-spotting reference computes them. The model
is the built-in kws-ds-cnn recipe (MLPerf Tiny's DS-CNN), trained here for fewer epochs at a higher rate
than the recipe's Speech Commands settings, quantized to int8 and checked against the Nucleo-L4R5ZI board,
the MLPerf Tiny reference platform. The command-line equivalent, with the recipe's own settings:

    edgekit build --recipe kws-ds-cnn --data my_clips/ --target nucleo-l4r5zi
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from edgekit import recipes, targets
from edgekit.build import build
from edgekit.errors import run_or_exit

RATE = 16_000
CLASSES = ("chirp", "hum", "noise", "whistle")


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    """16-bit mono PCM from float samples in [-1, 1], with the standard library's wave module."""
    frames = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes(frames.tobytes())


def sound(name: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One 'word': a rising chirp, a low hum with harmonics, a noise burst or a high whistle with vibrato."""
    t = np.arange(int(seconds * RATE)) / RATE
    if name == "chirp":
        start, end = rng.uniform(300, 600), rng.uniform(2500, 3500)
        return np.sin(2 * np.pi * (start * t + (end - start) * t ** 2 / (2 * seconds)))
    if name == "hum":
        pitch = rng.uniform(110, 220)
        return sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3)) / 1.8
    if name == "noise":
        return rng.uniform(-1, 1, len(t))
    pitch = rng.uniform(1500, 2500)  # whistle
    return np.sin(2 * np.pi * pitch * t + 3 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))


def write_example_clips(folder: Path, per_class: int, seed: int = 0) -> Path:
    """folder/<class>/NNN.wav: 1 s at 16 kHz, one 0.3-0.7 s sound at a random time over quiet background noise."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            clip = rng.normal(0, 0.01, RATE)
            length = rng.uniform(0.3, 0.7)
            word = sound(name, length, rng) * np.hanning(int(length * RATE)) * rng.uniform(0.3, 0.9)
            start = rng.integers(0, RATE - len(word))
            clip[start:start + len(word)] += word
            write_wav(folder / name / f"{i:03d}.wav", clip)
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=None,
                        help="your clips, one subfolder of .wav files per class; default: a generated folder")
    parser.add_argument("--target", default="nucleo-l4r5zi", help="a built-in target name or a profile's path")
    parser.add_argument("--out", type=Path, default=Path("build"), help="parent of the build folder")
    parser.add_argument("--quick", action="store_true", help="fewer generated clips, a narrower network")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    # The recipe trains 36 epochs in batches of 100 over Speech Commands' 85,000 clips. A few hundred clips need
    # a higher rate and small batches: the batch-norm statistics that inference uses settle only after a few
    # hundred training steps (with fewer, the float model answers one class whatever it hears).
    recipe = recipes.load("kws-ds-cnn").with_changes(
        train={"epochs": 25, "batch_size": 8, "learning_rate": 0.003}, optimize={"qat_epochs": 1})
    if args.quick:
        # A narrower network on fewer clips, quantized after training without QAT (as the MLPerf Tiny reference
        # does). A few dozen test clips, each worth several points of accuracy: the int8 guard goes from 1 to 10.
        recipe = recipe.with_changes(builder_args={"filters": 32, "blocks": 2},
                                     train={"epochs": 30}, optimize={"qat_epochs": 0, "max_drop": 10.0})
    folder = args.folder
    if folder is None:
        folder = write_example_clips(Path(tempfile.mkdtemp(prefix="edgekit-clips-")), 40 if args.quick else 100)
        print(f"wrote {len(CLASSES)} class folders of generated 1 s clips to {folder}")

    result = build(recipe, targets.load(args.target), args.out, runs=20 if args.quick else 200,
                   data_spec=str(folder))
    report, dataset = result.report, result.report["dataset"]
    labels = (result.directory / "labels.txt").read_text().split()
    features = dataset["preprocessing"]["features"]
    print(f"{dataset['name']}: classes {', '.join(labels)}; {dataset['train']} train / {dataset['val']} validation "
          f"/ {dataset['test']} test clips as {'x'.join(map(str, features['shape']))} MFCC features"
          + (f", {dataset['skipped']} undecodable files skipped" if dataset["skipped"] else ""))
    for variant in report["variants"]:
        print(f"  {variant['name']:<8} {variant['size_bytes']:>7,} bytes, test accuracy {variant['accuracy']:.4f}, "
              f"host median {variant['latency_ms']['median']:.3f} ms")
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    print(f"{report['target']}: {'FITS' if report['fits'] else 'DOES NOT FIT'}, shipping {report['selected']} "
          f"({report['selection_reason']})")
    for check in selected["fit"]["checks"]:
        print(f"  {check['budget']:<9} {check['summary']}")
    print(f"build folder: {result.directory}")
    return report


if __name__ == "__main__":
    run_or_exit(main)  # the one-line error and exit code `edgekit` itself would give
