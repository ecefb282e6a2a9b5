"""Keyword-spotting features: .wav clips -> 16 kHz, 1 s -> 49x10 MFCCs, as the MLPerf Tiny KWS reference
computes them with tf.signal (benchmark/training/keyword_spotting/get_dataset.py and kws_util.py in
mlcommons/tiny: 30 ms Hann windows every 20 ms, 40 mel bins from 20 to 4000 Hz, log(mel + 1e-6), first 10
MFCCs). Used by audio folders and by builtin:speech_commands."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s
WINDOW_SAMPLES = 480  # 30 ms
STRIDE_SAMPLES = 320  # 20 ms
FFT_LENGTH = 512  # tf.signal.stft's default for a 480-sample frame: the next power of 2
MEL_BINS = 40
LOWER_HZ, UPPER_HZ = 20.0, 4000.0
LOG_OFFSET = 1e-6
MFCC_COUNT = 10
FRAMES = 1 + (CLIP_SAMPLES - WINDOW_SAMPLES) // STRIDE_SAMPLES  # 49
FEATURE_SHAPE = (FRAMES, MFCC_COUNT, 1)

PREPROCESSING = {
    "audio": {"sample_rate": SAMPLE_RATE, "clip_samples": CLIP_SAMPLES, "channels": "mean of channels",
              "length": "zero-padded or cut at the end", "volume": "divided by the clip's peak amplitude"},
    "features": {"type": "mfcc", "reference": "MLPerf Tiny keyword spotting", "window_samples": WINDOW_SAMPLES,
                 "stride_samples": STRIDE_SAMPLES, "window": "hann", "fft_length": FFT_LENGTH,
                 "spectrum": "magnitude", "mel_bins": MEL_BINS, "lower_hz": LOWER_HZ, "upper_hz": UPPER_HZ,
                 "log_offset": LOG_OFFSET, "mfccs": MFCC_COUNT, "shape": list(FEATURE_SHAPE)},
}


def read_wav(path: Path) -> np.ndarray:
    """A .wav file (PCM or float, any rate and channel count) -> mono float32 samples at SAMPLE_RATE.

    Raises ValueError (or OSError) for a file that is not a readable, non-empty WAV."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    rate, data = wavfile.read(path)
    if data.size == 0:
        raise ValueError("the clip holds no samples")
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        data = (data.astype(np.float32) - 128) / 128
    elif data.dtype.kind == "i":
        data = data.astype(np.float32) / 2 ** (8 * data.dtype.itemsize - 1)
    data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        divisor = math.gcd(int(rate), SAMPLE_RATE)
        data = resample_poly(data, SAMPLE_RATE // divisor, int(rate) // divisor).astype(np.float32)
    if not np.isfinite(data).all():
        raise ValueError("the clip holds NaN or infinite samples")
    return data


def fit_clip(samples: np.ndarray) -> np.ndarray:
    """Zero-pad or cut to CLIP_SAMPLES, then divide by the peak amplitude."""
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    clip[:min(len(samples), CLIP_SAMPLES)] = samples[:CLIP_SAMPLES]
    # The reference divides by the clip's maximum; the peak magnitude keeps the sign and a silent clip safe.
    peak = float(np.abs(clip).max())
    return clip / peak if peak > 0 else clip


def read_clip(path: Path) -> np.ndarray:
    """One .wav file -> CLIP_SAMPLES float32 samples at SAMPLE_RATE, peak-normalised."""
    return fit_clip(read_wav(path))


def mfcc(clips: np.ndarray, batch: int = 1024) -> np.ndarray:
    """(N, CLIP_SAMPLES) waveforms -> (N, 49, 10, 1) float32 MFCC features."""
    from edgekit._tf import tf

    mel_matrix = tf.signal.linear_to_mel_weight_matrix(MEL_BINS, FFT_LENGTH // 2 + 1, SAMPLE_RATE,
                                                       LOWER_HZ, UPPER_HZ)
    features = []
    for start in range(0, len(clips), batch):
        spectrum = tf.abs(tf.signal.stft(clips[start:start + batch], frame_length=WINDOW_SAMPLES,
                                         frame_step=STRIDE_SAMPLES, fft_length=FFT_LENGTH,
                                         window_fn=tf.signal.hann_window))
        log_mel = tf.math.log(tf.tensordot(spectrum, mel_matrix, 1) + LOG_OFFSET)
        features.append(tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :MFCC_COUNT].numpy())
    return np.concatenate(features)[..., np.newaxis].astype(np.float32)
