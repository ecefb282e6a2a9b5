"""Speech Commands v0.02 as MLPerf Tiny keyword spotting uses it: 10 words, `_silence_` and `_unknown_`, in the
reference's class order, turned into the same 49x10 MFCC features as any audio folder.

The archive unpacks to one folder per word, `_background_noise_/` and the official `validation_list.txt` and
`testing_list.txt`, which fix the split. Words outside the ten are `_unknown_`; `_silence_` is every whole
second of the background-noise recordings (each tenth second to test, the next to validation). The
reference (via tensorflow_datasets) takes its test set from a separate archive; this one does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.data import audio
from edgekit.data.builtin import keras_download
from edgekit.data.core import Samples
from edgekit.data.folders import decode_files
from edgekit.errors import UsageError

URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
LABELS = (*WORDS, SILENCE, UNKNOWN)  # the reference's order: its models' outputs mean the same classes
NOISE_FOLDER = "_background_noise_"
LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}


def fetch(cache: Path) -> Path:
    """The unpacked archive in the Keras cache, downloaded and unpacked there first when missing."""
    folder = cache / "datasets" / "speech_commands_v0.02"
    if (folder / LISTS["test"]).exists():
        return folder
    from edgekit._tf import keras

    folder.mkdir(parents=True, exist_ok=True)
    try:
        with keras_download():
            keras.utils.get_file(Path(URL).name, URL, cache_dir=str(cache),
                                 cache_subdir=str(folder.relative_to(cache)), extract=True)
    except Exception as e:  # tf_keras raises a bare Exception for a failed download
        raise UsageError(f"builtin:speech_commands: could not download {URL}, and the Keras cache has no "
                         f"{folder / LISTS['test']}; without network access, download it elsewhere and unpack it "
                         f"into {folder}") from e
    return folder


def read(folder: Path) -> Samples:
    listed = {part: set((folder / name).read_text().split()) for part, name in LISTS.items()}
    files: dict[str, dict[str, list[Path]]] = {"train": {}, "val": {}, "test": {}}
    for word in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))):
        label = word.name if word.name in WORDS else UNKNOWN
        for clip in sorted(word.glob("*.wav")):
            relative = f"{word.name}/{clip.name}"
            part = next((p for p, names in listed.items() if relative in names), "train")
            files[part].setdefault(label, []).append(clip)
    silence = _silence(folder / NOISE_FOLDER)
    index = {label: i for i, label in enumerate(LABELS)}
    parts, skipped = {}, 0
    for part, by_label in files.items():
        if not by_label:
            raise UsageError(f"{folder}: no .wav clips for the {part} split; is the archive fully unpacked?")
        features, labels, failed = decode_files(folder, by_label, audio.read_clip, "clips",
                                                batch=lambda clips: audio.mfcc(np.stack(clips)))
        y = np.array([index[label] for label in labels] + [index[SILENCE]] * len(silence[part]), dtype=np.int64)
        parts[part] = (np.concatenate([features, silence[part]]), y)
        skipped += failed
    return Samples("builtin:speech_commands", *parts["train"], val=parts["val"], test=parts["test"],
                   labels=LABELS, preprocessing=dict(audio.PREPROCESSING), skipped=skipped)


def _silence(noise_folder: Path) -> dict[str, np.ndarray]:
    """Every whole second of background noise, as features, dealt to test / validation / train."""
    seconds = []
    for recording in sorted(noise_folder.glob("*.wav")):
        samples = audio.read_wav(recording)
        whole = len(samples) // audio.CLIP_SAMPLES
        seconds += [audio.fit_clip(samples[i * audio.CLIP_SAMPLES:(i + 1) * audio.CLIP_SAMPLES]) for i in range(whole)]
    empty = np.zeros((0, *audio.FEATURE_SHAPE), dtype=np.float32)
    if not seconds:
        return {"train": empty, "val": empty, "test": empty}
    features = audio.mfcc(np.stack(seconds))
    order = np.arange(len(features)) % 10
    return {"test": features[order == 0], "val": features[order == 1], "train": features[order >= 2]}
