"""The project's one audio loader, shared by training, inference and the modding tool.

One decoder everywhere matters: libsndfile and ffmpeg disagree on the start of some mp3s by ~12 ms
(decoder delay), which would shift every predicted object if training and inference used different
ones. So everything soundfile can decode (mp3, ogg vorbis, opus, flac, wav) goes through soundfile;
ffmpeg is only a fallback for containers libsndfile cannot open (m4a/aac/mp4).
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = ["AudioCache", "AudioError", "AudioWarning", "change_speed", "load_audio", "onset_strength"]

DEFAULT_SAMPLE_RATE = 16000
# Extensions libsndfile cannot decode; they go straight to ffmpeg.
FFMPEG_ONLY_SUFFIXES = {".m4a", ".aac", ".mp4"}
# Onset strength: 5 ms frames; its peaks trail mapped onsets by about one frame (median +8 ms on val).
ONSET_HOP_MS = 5.0
ONSET_N_FFT = 1024
ONSET_LATENCY_MS = 5.0
# Frames per read: a decode error mid-file loses at most this block (~0.7 s at 44.1 kHz).
_BLOCK_FRAMES = 1 << 15


class AudioError(Exception):
    """An audio file that cannot be used; the message is one sentence fit to show a user."""


class AudioWarning(UserWarning):
    """Audio was only partly decoded (truncated or corrupt file); what decoded is still returned."""


def load_audio(path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to mono float32 at `sample_rate`, peak-normalised to 1.

    Silent audio stays all zeros (callers decide whether that is an error). A truncated or partly
    corrupt file returns every block that decoded, with an AudioWarning saying how much was kept,
    because a map is still trainable on 98% of its song. Raises AudioError for anything unusable.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    if not path.exists():
        raise AudioError(f"cannot read audio '{path}': file not found")
    if path.is_dir():
        raise AudioError(f"cannot read audio '{path}': it is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read audio '{path}': permission denied")
    if path.stat().st_size == 0:
        raise AudioError(f"cannot read audio '{path}': the file is empty")

    if path.suffix.lower() in FFMPEG_ONLY_SUFFIXES:
        audio = _decode_ffmpeg(path, sample_rate, reason=f"{path.suffix.lower().lstrip('.')} audio")
    else:
        decoded = _decode_soundfile(path)
        if decoded is None:
            # libsndfile could not open it (or decoded nothing before failing): try ffmpeg if present.
            if shutil.which("ffmpeg") is None:
                raise AudioError(f"cannot read audio '{path}': it is not an audio file soundfile can decode")
            audio = _decode_ffmpeg(path, sample_rate, reason="this file")
        else:
            audio, in_rate = decoded
            if in_rate != sample_rate and len(audio):
                audio = soxr.resample(audio, in_rate, sample_rate, quality="HQ")
    if len(audio) == 0:
        raise AudioError(f"cannot read audio '{path}': it contains no audio samples")
    return _normalise(audio)


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """Mono float32 at the file's own rate, or None when libsndfile cannot decode it at all."""
    try:
        f = sf.SoundFile(str(path))
    except RuntimeError:  # sf.LibsndfileError: "Format not recognised" and the like
        return None
    parts: list[np.ndarray] = []
    kept = 0
    error: Exception | None = None
    with f:
        expected = f.frames
        buf = np.empty((_BLOCK_FRAMES, f.channels), dtype=np.float32)
        try:
            # read(out=...) is not clamped to the header's frame count, which can be wrong.
            while True:
                block = f.read(out=buf)
                if len(block) == 0:
                    break
                parts.append(block.mean(axis=1, dtype=np.float32))  # downmix; also copies out of buf
                kept += len(block)
        except RuntimeError as exc:
            error = exc
        rate = f.samplerate
    if kept == 0 and error is not None:
        return None
    # A small shortfall is tolerated: for mp3s without a Xing header the frame count is an estimate.
    if error is not None or kept < 0.99 * expected:
        why = f"decoding failed ({error})" if error is not None else "the file ends early"
        total = f" of {expected / rate:.2f} s" if expected > kept else ""
        warnings.warn(f"audio '{path}': {why}; kept {kept / rate:.2f} s{total}", AudioWarning, stacklevel=3)
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return audio, rate


def _decode_ffmpeg(path: Path, sample_rate: int, reason: str) -> np.ndarray:
    """Mono float32 at `sample_rate` through the ffmpeg executable (m4a/aac, which libsndfile lacks)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(f"cannot read audio '{path}': {reason} needs ffmpeg, which is not installed")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn",
           "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(f"cannot read audio '{path}': ffmpeg could not decode it"
                         + (f" ({detail[-1]})" if detail else ""))
    usable = len(proc.stdout) // 4 * 4
    return np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)


def _normalise(audio: np.ndarray) -> np.ndarray:
    """Peak-normalise to 1 so loudness differences between songs do not reach the model."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0.0 and np.isfinite(peak):
        audio = audio / np.float32(peak)
    return audio


def change_speed(audio: np.ndarray, speed: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """The song played `speed` times faster, as osu!'s DT/HT do: pitch shifts, length becomes len/speed.

    Treats the samples as if recorded at sample_rate*speed and resamples them back to sample_rate.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if speed == 1:
        return audio
    return soxr.resample(np.asarray(audio, dtype=np.float32), sample_rate * speed, sample_rate, quality="HQ")


class AudioCache:
    """Decoded audio cached on disk as .npy, so later epochs and runs never decode an mp3 again.

    Entries are keyed by the source's resolved path, size and mtime and by the sample rate, so an
    edited song is decoded afresh. Files are written atomically (temp file + os.replace) because
    several DataLoader workers or DDP ranks may fill the cache at once, and are returned memory-mapped
    (read-only) so worker processes share pages. With no cache_dir, load() just decodes.
    """

    def __init__(self, cache_dir: str | os.PathLike | None, sample_rate: int = DEFAULT_SAMPLE_RATE):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.sample_rate = sample_rate

    def entry_path(self, path: str | os.PathLike) -> Path:
        """Where the cached decode of `path` lives (it may not exist yet)."""
        assert self.cache_dir is not None
        source = Path(path).resolve()
        st = source.stat()
        key = f"{source}\0{st.st_size}\0{st.st_mtime_ns}\0{self.sample_rate}"
        return self.cache_dir / f"{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()}.npy"

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """load_audio(path, sample_rate), from the cache when present; the result is read-only."""
        if self.cache_dir is None:
            return load_audio(path, self.sample_rate)
        if not Path(path).is_file():
            return load_audio(path, self.sample_rate)  # raises the right AudioError
        entry = self.entry_path(path)
        if entry.is_file():
            try:
                return np.load(entry, mmap_mode="r")
            except (OSError, ValueError):
                pass  # unreadable entry (e.g. disk was full): decode again and overwrite it
        audio = load_audio(path, self.sample_rate)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=entry.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, audio)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return np.load(entry, mmap_mode="r")


def onset_strength(audio: np.ndarray, sample_rate: int,
                   bands_hz: Sequence[tuple[float, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame times (ms) and the half-wave rectified spectral flux of the log magnitude spectrum:
    over the whole spectrum (frames,), or over each of `bands_hz` (frames, bands); a band up to infinity
    takes every bin from its lower edge, so (0, inf) is the whole spectrum's."""
    hop = max(int(round(sample_rate * ONSET_HOP_MS / 1000)), 1)
    signal = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    spectrum = torch.stft(signal, ONSET_N_FFT, hop, window=torch.hann_window(ONSET_N_FFT), center=True,
                          return_complex=True)
    log_magnitude = torch.log1p(100.0 * spectrum.abs())
    rise = torch.relu(log_magnitude[:, 1:] - log_magnitude[:, :-1])
    if bands_hz is None:
        flux = rise.mean(dim=0).numpy()
    else:
        bin_hz = sample_rate / ONSET_N_FFT
        bins = [(int(lo / bin_hz), len(rise) if math.isinf(hi) else max(int(min(hi, sample_rate / 2) / bin_hz), int(lo / bin_hz) + 1))
                for lo, hi in bands_hz]
        flux = torch.stack([rise[lo:hi].mean(dim=0) for lo, hi in bins], dim=1).numpy()
    strength = np.concatenate([np.zeros((1,) + flux.shape[1:]), flux])
    times = np.arange(len(strength)) * hop * 1000.0 / sample_rate
    return times, strength
