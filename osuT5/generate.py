"""Decoding one audio window with the generator and a KV cache."""
from __future__ import annotations

import torch

from tokenizer.vocabulary import EOS

from .model import Mapperatorinator


@torch.no_grad()
def greedy_decode(model: Mapperatorinator, audio: torch.Tensor, prompt: list[int], max_new_tokens: int,
                  eos_id: int = EOS) -> list[int]:
    """The most likely continuation of `prompt` for one window of audio, up to and including `eos_id`."""
    device = next(model.parameters()).device
    encoder_outputs = model.encode(audio.to(device)[None])
    step_ids = torch.tensor([prompt], device=device)
    past = None
    generated: list[int] = []
    while len(generated) < max_new_tokens:
        out = model(decoder_input_ids=step_ids, encoder_outputs=encoder_outputs, past_key_values=past, use_cache=True)
        past = out.past_key_values
        next_id = int(out.logits[0, -1].argmax())
        generated.append(next_id)
        if next_id == eos_id:
            break
        step_ids = torch.tensor([[next_id]], device=device)
    return generated
