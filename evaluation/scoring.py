"""One generated beatmap against its human reference: the row evaluate.py writes per map."""
from __future__ import annotations

import numpy as np

from tokenizer.check import star_rating
from tokenizer.osu_file import Beatmap

from .baselines import flux_onsets, half_beat_grid
from .metrics import (beat_phase_error, column_score, main_bpm, notes, onset_score, onsets, rhythm_distance, rhythm_shares,
                      layout_shares)


def score_map(reference: Beatmap, generated: Beatmap | None, strength: tuple[np.ndarray, np.ndarray],
              song_ms: float, tolerances: list[int]) -> dict:
    """Onset scores of the model and both baselines, plus timing, rhythm, density and star rating.

    `generated` is None when generation failed: the model then scores 0 and the map-level numbers
    that need a file (stars, BPM, density) are None.
    """
    reference_onsets = onsets(reference)
    grid = half_beat_grid(reference.timing, reference_onsets[0], reference_onsets[-1]) if len(reference_onsets) else np.zeros(0)
    flux = flux_onsets(*strength, count=len(reference_onsets))
    generated_onsets = onsets(generated) if generated is not None else np.zeros(0)
    seconds = song_ms / 1000
    row = {
        "model": {}, "flux": {}, "grid": {},
        "reference_objects_per_s": len(reference.hit_objects) / seconds,
        "reference_bpm": main_bpm(reference, song_ms),
        "reference_rhythm": rhythm_shares(reference),
        "reference_layout": layout_shares(reference),
    }
    for tolerance in tolerances:
        key = str(tolerance)
        model = onset_score(generated_onsets, reference_onsets, tolerance)
        row["model"][key] = model.as_dict()
        row["flux"][key] = onset_score(flux, reference_onsets, tolerance).as_dict()
        row["grid"][key] = onset_score(grid, reference_onsets, tolerance).as_dict()
    widest = onset_score(generated_onsets, reference_onsets, max(tolerances))
    row["median_offset_ms"] = float(np.median(widest.matched_offsets)) if len(widest.matched_offsets) else None
    if reference.mode == 3:
        generated_notes = notes(generated) if generated is not None else (np.zeros(0), np.zeros(0, dtype=int))
        row["columns"] = {str(t): column_score(generated_notes, notes(reference), t).as_dict() for t in tolerances}
    if generated is None:
        row.update(achieved_stars=None, objects_per_s=None, bpm=None, bpm_error=None, phase_error_ms=None, rhythm=None,
                   rhythm_distance=None, layout=None)
        return row
    middle = float(np.median(reference_onsets)) if len(reference_onsets) else song_ms / 2
    row.update(
        achieved_stars=star_rating(generated),
        objects_per_s=len(generated.hit_objects) / seconds,
        bpm=main_bpm(generated, song_ms),
        phase_error_ms=beat_phase_error(generated, reference, middle),
        rhythm=rhythm_shares(generated),
        layout=layout_shares(generated),
    )
    row["rhythm_distance"] = (rhythm_distance(row["rhythm"], row["reference_rhythm"])
                              if len(generated_onsets) and len(reference_onsets) else None)
    row["bpm_error"] = row["bpm"] - row["reference_bpm"]
    return row
