"""Small real data files for the data tests: .npz, .csv, PNG folders and .wav folders, made in a temp dir.

Every generator is seeded and class-dependent, so a loader that mixes up labels shows in the tests."""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def image_arrays(count: int, size: tuple[int, int], classes: int, seed: int = 0):
    """uint8 (count, H, W) images whose brightness depends on the class, and integer labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % classes
    means = (40 + 170 * y / max(classes - 1, 1)).reshape(-1, *[1] * len(size))
    x = np.clip(rng.normal(means, 20, (count, *size)), 0, 255)
    return x.astype(np.uint8), y


def write_csv(path: Path, rows: list[list], header: list[str] | None) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def sensor_rows(count: int, names: tuple[str, ...], features: int, seed: int = 0) -> list[list]:
    """Rows of `features` numbers (mean depends on the class, in mixed units) followed by the class name."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        label = i % len(names)
        values = rng.normal(label * 2.0, 1.0, features) * 10.0 ** (np.arange(features) % 3)
        rows.append([f"{v:.4f}" for v in values] + [names[label]])
    return rows


def write_png(path: Path, pixels: np.ndarray) -> Path:
    from edgekit._tf import tf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(pixels.astype(np.uint8)).numpy())
    return path


def write_image_folder(root: Path, per_class: int, classes=("cat", "dog"), seed: int = 0) -> Path:
    """Class folders of PNGs in mixed sizes and channel counts (gray, RGB, RGBA)."""
    rng = np.random.default_rng(seed)
    sizes = [(12, 10), (16, 16), (20, 14)]
    for c, name in enumerate(classes):
        for i in range(per_class):
            channels = (1, 3, 4)[i % 3]
            brightness = 40 + 170 * c / max(len(classes) - 1, 1)
            pixels = np.clip(rng.normal(brightness, 15, (*sizes[i % 3], channels)), 0, 255)
            if channels == 4:
                pixels[..., 3] = 255
            write_png(root / name / f"{i:03d}.png", pixels)
    return root


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    """16-bit PCM; `samples` in [-1, 1], shape (n,) or (n, channels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if frames.ndim == 1 else frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return path


def write_audio_folder(root: Path, per_class: int, words=(("high", 2000.0), ("low", 300.0)), seed: int = 0) -> Path:
    """Class folders of noisy tones at a class frequency, in mixed rates, lengths and channel counts."""
    rng = np.random.default_rng(seed)
    variants = [(16_000, 1.0, 1), (8_000, 1.0, 1), (16_000, 0.6, 2), (22_050, 1.3, 1)]
    for name, frequency in words:
        for i in range(per_class):
            rate, seconds, channels = variants[i % len(variants)]
            samples = tone(frequency * rng.uniform(0.9, 1.1), seconds, rate) + rng.normal(0, 0.02, int(seconds * rate))
            if channels == 2:
                samples = np.stack([samples, samples], axis=1)
            write_wav(root / name / f"{i:03d}.wav", samples, rate)
    return root
