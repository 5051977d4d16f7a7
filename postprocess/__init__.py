"""Generated events -> a playable beatmap: timing from beat markers, snapping, positions, slider
fixes, validity checks, .osz packaging and partial remapping (DESIGN.md, reference notes §4.7, §6)."""
