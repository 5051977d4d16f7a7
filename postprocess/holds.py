"""Hold notes for mania maps whose model writes too few of them.

The shipped generator writes almost no holds: none in 59 of its 62 val mania maps, and none on a song
asked for `hold_note_ratio=0.2`. 93% of the train split's human mania maps have some (median 7.6% of
their notes). So when a share is asked for, notes become holds until the map has it, shaped like the
train split's holds: those sit on notes with at least a beat of room before the column's next note
(median 1.5 beats, against 1 for other notes) and last a median 0.4 of that room (0.5 beats; 90%
of them 2 beats or less). The notes with room are taken evenly through the song (taking those with
the most room first made them 1.75 beats long, at the cap). Times and columns do not change, so
neither does the rhythm; it runs after star fitting, which would otherwise drop notes for the holds'
strain.
"""
from __future__ import annotations

import math

from tokenizer.osu_file import CIRCLE, HOLD, Beatmap, mania_column

MIN_ROOM_BEATS = 1.0  # a note becomes a hold only with this much time before its column's next note
LENGTH_SHARE = 0.4    # of that room, before snapping down to a 1/4 beat
MAX_BEATS = 2.0


def add_holds(beatmap: Beatmap, share: float) -> Beatmap:
    """`beatmap` (mania) with notes turned into holds until `share` of its objects are holds (changed in place
    and returned); fewer where too few notes have room."""
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    wanted = round(share * len(objects)) - sum(o.kind == HOLD for o in objects)
    if wanted <= 0:
        return beatmap
    keys, timing = beatmap.keycount, beatmap.timing
    next_start: dict[int, float] = {}
    candidates = []
    for o in reversed(objects):
        column = mania_column(o.x, keys)
        room = next_start.get(column, math.inf) - o.time
        next_start[column] = o.time
        beat = timing.beat_length_at(o.time)
        if o.kind == CIRCLE and room >= MIN_ROOM_BEATS * beat:
            candidates.append((room, o, beat))
    candidates.reverse()
    taken = min(wanted, len(candidates))
    for j in range(taken):  # evenly through the song
        room, o, beat = candidates[int((j + 0.5) * len(candidates) / taken)]
        quarter = beat / 4
        length = math.floor(min(LENGTH_SHARE * room, MAX_BEATS * beat) / quarter + 1e-6) * quarter
        o.kind, o.end_time = HOLD, float(round(o.time + length))
    beatmap.hit_objects = objects
    return beatmap
