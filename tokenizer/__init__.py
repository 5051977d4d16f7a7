"""The beatmap language: the .osu file model, events, and token ids."""
