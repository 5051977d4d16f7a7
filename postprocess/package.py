""".osz packaging: the .osu, its audio and background in one zip that osu! imports by double-click."""
from __future__ import annotations

import os
import zipfile

from tokenizer.osu_file import BeatmapError


def write_osz(osz_path: str | os.PathLike, osu_name: str, osu_text: str, audio_path: str | os.PathLike,
              background_path: str | os.PathLike | None = None, overwrite: bool = False) -> None:
    """Write the archive atomically (temporary file + rename): never half-written, never replacing a file unless asked.

    Files keep their own base names inside the archive; raises BeatmapError with one sentence on failure.
    """
    name = os.fspath(osz_path)
    if os.path.isdir(name):
        raise BeatmapError(f"{name}: is a folder, not a file name")
    if os.path.exists(name) and not overwrite:
        raise BeatmapError(f"{name}: already exists; refusing to overwrite it")
    if not osu_name.endswith(".osu") or os.path.basename(osu_name) != osu_name or "\\" in osu_name:
        raise BeatmapError(f"{osu_name!r}: the beatmap's name inside the .osz must be a plain file name ending in .osu")
    files = [os.fspath(p) for p in (audio_path, background_path) if p is not None]
    for path in files:
        if not os.path.isfile(path):
            raise BeatmapError(f"{path}: file not found; it cannot go into the .osz")
    names = [osu_name, *(os.path.basename(p) for p in files)]
    if len(set(names)) != len(names):
        raise BeatmapError(f"{name}: two files would share one name inside the .osz ({', '.join(names)})")
    temporary = f"{name}.{os.getpid()}.tmp"
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            archive.writestr(osu_name, osu_text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
            for path in files:  # audio and images are compressed already
                archive.write(path, os.path.basename(path))
        os.replace(temporary, name)
    except OSError as e:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise BeatmapError(f"{name}: cannot write the .osz ({e.strerror or e})") from None
