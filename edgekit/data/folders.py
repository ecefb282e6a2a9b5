"""Folders of class subfolders: images (decoded with tf.io.decode_image) or .wav clips (MFCC features).

A subfolder is a class, named by the folder; subfolders whose names start with '.' or '_' (such as Speech
Commands' `_background_noise_`) are not classes. Files are found at any depth inside a class folder. A few
files that cannot be decoded are skipped and counted; when more than half fail, the folder is refused."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data import audio
from edgekit.data.core import PIXEL_SCALE, Samples, convert_channels, shape_text
from edgekit.errors import UsageError

log = logging.getLogger("edgekit")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
AUDIO_SUFFIXES = (".wav",)


def read_folder(folder: Path, input_shape: tuple[int, ...] | None) -> Samples:
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not classes:
        raise UsageError(f"{folder}: no class subfolders; put each class's images or .wav clips in a "
                         "subfolder named after the class")
    images = {d.name: _files(d, IMAGE_SUFFIXES) for d in classes}
    clips = {d.name: _files(d, AUDIO_SUFFIXES) for d in classes}
    if sum(map(len, clips.values())) > sum(map(len, images.values())):
        return read_audio_folder(folder, clips)
    if not any(images.values()):
        raise UsageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) or .wav clips in its class "
                         "subfolders")
    return read_image_folder(folder, images, input_shape)


def read_image_folder(folder: Path, files: dict[str, list[Path]], input_shape: tuple[int, ...] | None) -> Samples:
    from edgekit._tf import tf

    _check_classes(folder, files, "images")

    def decode(path: Path) -> np.ndarray:
        try:
            image = tf.io.decode_image(path.read_bytes(), expand_animations=False).numpy()
        except tf.errors.OpError as e:
            raise ValueError(re.sub(r"\{\{.*?\}\}\s*", "", e.message).split(" [Op:")[0]) from e
        return convert_channels(image, 1 if image.shape[-1] <= 2 else 3)

    decoded, labels, skipped = decode_files(folder, files, decode, "images")
    if input_shape is not None and len(input_shape) == 3 and input_shape[-1] in (1, 3):
        size, channels = tuple(input_shape[:2]), input_shape[-1]
    else:  # the most common size and channel count; the model input reshapes from there
        size = Counter(image.shape[:2] for image in decoded).most_common(1)[0][0]
        channels = Counter(image.shape[-1] for image in decoded).most_common(1)[0][0]
    x = np.empty((len(decoded), *size, channels), dtype=np.float32)
    resized = 0
    for i, image in enumerate(decoded):
        image = convert_channels(image.astype(np.float32), channels)
        if image.shape[:2] != size:
            image = tf.image.resize(image, size, antialias=True).numpy()
            resized += 1
        x[i] = image
    preprocessing: dict[str, Any] = {"scale": PIXEL_SCALE, "offset": 0.0, "channels": channels}
    if resized:
        log.info("%s: resized %d of %d images to %s", folder, resized, len(decoded), shape_text(size))
        preprocessing["resize"] = {"size": list(size), "method": "bilinear, antialiased"}
    return Samples(str(folder), x * np.float32(PIXEL_SCALE), np.array(labels), preprocessing=preprocessing,
                   images=True, skipped=skipped)


def read_audio_folder(folder: Path, files: dict[str, list[Path]]) -> Samples:
    _check_classes(folder, files, ".wav clips")
    features, labels, skipped = decode_files(folder, files, audio.read_clip, "clips",
                                            batch=lambda clips: audio.mfcc(np.stack(clips)))
    return Samples(str(folder), features, np.array(labels),
                   preprocessing=dict(audio.PREPROCESSING), skipped=skipped)


def _files(class_folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in class_folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                  and not p.name.startswith("."))


def _check_classes(folder: Path, files: dict[str, list[Path]], what: str) -> None:
    if len(files) < 2:
        raise UsageError(f"{folder}: only one class folder ('{next(iter(files))}'); a classifier needs at least "
                         "2 class subfolders")
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise UsageError(f"{folder}: class folder '{empty[0]}' has no {what}")


def decode_files(folder: Path, files: dict[str, list[Path]], decode: Callable[[Path], np.ndarray], what: str,
                batch: Callable[[list[np.ndarray]], np.ndarray] | None = None, batch_size: int = 1024):
    """Decode every file; a few failures are skipped and counted, more than half is an error.

    `batch` turns each `batch_size` decoded items into one array as it goes (waveforms into features),
    so a large folder never holds every raw item at once."""
    done: list[np.ndarray] = []  # the batched arrays
    pending: list[np.ndarray] = []  # decoded items not yet batched
    labels: list[str] = []
    failures: list[str] = []
    for name, paths in files.items():
        before = len(labels)
        for path in paths:
            try:
                pending.append(decode(path))
                labels.append(name)
            except (ValueError, OSError, EOFError) as e:
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                failures.append(f"{path.relative_to(folder)}: {reason}")
            if batch and len(pending) == batch_size:
                done.append(batch(pending))
                pending = []
        if len(labels) == before:
            raise UsageError(f"{folder}: none of the {len(paths)} {what} in class folder '{name}' could be decoded "
                             f"(first: {failures[-len(paths)]})")
    total = len(labels) + len(failures)
    if len(failures) * 2 > total:
        raise UsageError(f"{folder}: {len(failures)} of {total} {what} could not be decoded (first: {failures[0]})")
    if failures:
        log.warning("%s: skipped %d of %d %s that could not be decoded (first: %s)", folder, len(failures), total,
                    what, failures[0])
    # one array of the batches, or (without `batch`) the decoded items, which may differ in shape
    decoded: np.ndarray | list[np.ndarray] = np.concatenate(done + ([batch(pending)] if pending else [])) \
        if batch else pending
    return decoded, labels, len(failures)
