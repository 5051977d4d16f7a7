"""The generator: an in-model mel front end and a Whisper encoder-decoder over the v29 token language.

Module names follow Mapperatorinator (reference notes §3.1): `spectrogram`, `encoder_embedder`
(n_mels -> d_model), `decoder_embedder` (input vocabulary -> d_model) and `transformer`, a Hugging Face
`WhisperForConditionalGeneration` whose `proj_out` predicts the output vocabulary.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, WhisperConfig, WhisperForConditionalGeneration
from transformers.audio_utils import mel_filter_bank
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.utils import logging as transformers_logging

from tokenizer.events import EventType
from tokenizer.vocabulary import EOS, PAD, SOS, Tokenizer

IGNORE_INDEX = -100


class MapperatorinatorConfig(PretrainedConfig):
    """Everything needed to rebuild the model offline: the backbone shape, the mel settings and the loss."""
    model_type = "mapperatorinator"

    def __init__(self, backbone_config: dict | None = None, vocab_size_in: int = 4000, vocab_size: int = 3667,
                 sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 128, n_mels: int = 128,
                 f_min: float = 0.0, f_max: float = 8000.0, mel_scale: str = "slaney", mel_norm: str | None = "slaney",
                 spectrogram_log_scale: bool = False, pad_mode: str = "constant", project_encoder_input: bool = True,
                 src_seq_len: int = 1024, tgt_seq_len: int = 2048, rhythm_weight: float = 3.0,
                 rhythm_token_start: int = 0, rhythm_token_end: int = 0, init_std: float = 0.02,
                 time_token_init: str = "learned", **kwargs):
        self.backbone_config = dict(backbone_config or {})
        self.vocab_size_in, self.vocab_size = vocab_size_in, vocab_size
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.mel_scale, self.mel_norm = f_min, f_max, mel_scale, mel_norm
        self.spectrogram_log_scale, self.pad_mode = spectrogram_log_scale, pad_mode
        self.project_encoder_input = project_encoder_input
        self.src_seq_len, self.tgt_seq_len = src_seq_len, tgt_seq_len
        self.rhythm_weight, self.rhythm_token_start, self.rhythm_token_end = rhythm_weight, rhythm_token_start, rhythm_token_end
        self.init_std = init_std
        if time_token_init not in ("learned", "aligned"):
            raise ValueError(f"time_token_init must be 'learned' or 'aligned', not {time_token_init!r}")
        self.time_token_init = time_token_init
        for key, value in (("tie_word_embeddings", False), ("pad_token_id", PAD), ("bos_token_id", SOS),
                           ("eos_token_id", EOS), ("decoder_start_token_id", SOS)):
            kwargs.setdefault(key, value)
        super().__init__(**kwargs)

    @property
    def window_samples(self) -> int:
        """Audio samples per window: src_seq_len mel frames with centre padding."""
        return (self.src_seq_len - 1) * self.hop_length

    def whisper_config(self) -> WhisperConfig:
        d_model = self.backbone_config["d_model"]
        values = dict(self.backbone_config)
        values.update(
            vocab_size=self.vocab_size, num_mel_bins=d_model if self.project_encoder_input else self.n_mels,
            max_source_positions=self.src_seq_len // 2, max_target_positions=self.tgt_seq_len,
            pad_token_id=PAD, bos_token_id=SOS, eos_token_id=EOS, decoder_start_token_id=SOS,
            suppress_tokens=[], begin_suppress_tokens=[], tie_word_embeddings=False, init_std=self.init_std,
        )
        return WhisperConfig(**values)


class MelSpectrogram(nn.Module):
    """Mel power spectrogram with torch.stft, always computed in fp32 (frames x n_mels)."""

    def __init__(self, config: MapperatorinatorConfig):
        super().__init__()
        self.config = config
        self.n_fft, self.hop_length, self.pad_mode = config.n_fft, config.hop_length, config.pad_mode
        self.log_scale = config.spectrogram_log_scale
        self.register_buffer("window", torch.empty(config.n_fft))
        self.register_buffer("filters", torch.empty(config.n_fft // 2 + 1, config.n_mels))
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute the window and filters from config (also for checkpoints saved without them)."""
        c = self.config
        with warnings.catch_warnings():  # v29's 388 mels on 513 FFT bins leave a few low filters empty, as upstream
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            filters = mel_filter_bank(
                num_frequency_bins=c.n_fft // 2 + 1, num_mel_filters=c.n_mels, min_frequency=c.f_min,
                max_frequency=c.f_max, sampling_rate=c.sample_rate, norm=c.mel_norm, mel_scale=c.mel_scale,
            )
        self.window.copy_(torch.hann_window(c.n_fft))
        self.filters.copy_(torch.from_numpy(filters))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, samples // hop + 1, n_mels)."""
        with torch.autocast(audio.device.type, enabled=False):
            spec = torch.stft(audio.float(), self.n_fft, self.hop_length, window=self.window.float(), center=True,
                              pad_mode=self.pad_mode, return_complex=True)
            mel = spec.abs().pow(2).transpose(1, 2) @ self.filters.float()
            return torch.log1p(mel) if self.log_scale else mel


class Mapperatorinator(PreTrainedModel):
    """Audio window + decoder tokens -> next-token logits over the output vocabulary."""
    config_class = MapperatorinatorConfig
    base_model_prefix = "mapperatorinator"
    main_input_name = "audio"
    _supports_sdpa = True

    def __init__(self, config: MapperatorinatorConfig):
        super().__init__(config)
        d_model = config.backbone_config["d_model"]
        self.spectrogram = MelSpectrogram(config)
        self.encoder_embedder = nn.Linear(config.n_mels, d_model) if config.project_encoder_input else None
        self.decoder_embedder = nn.Embedding(config.vocab_size_in, d_model)
        self.transformer = WhisperForConditionalGeneration(config.whisper_config())
        self.freeze_fixed_parameters()
        self.register_buffer("class_weights", torch.empty(config.vocab_size))
        self.step_layers: list[StepLayer] | None = None  # set by prepare_steps
        self.int8_proj_out: StepLinear | None = None
        self.post_init()

    def freeze_fixed_parameters(self) -> None:
        """The encoder's sinusoidal positions stay fixed, as Whisper's; the backbone's token embedding is
        kept only so v29 state dicts load (decoder_embedder replaces it), frozen so DDP sees no unused
        parameter. from_pretrained makes every parameter trainable again, so load_model calls this too."""
        self.transformer.model.encoder.embed_positions.requires_grad_(False)
        self.transformer.model.decoder.embed_tokens.requires_grad_(False)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The backbone initialises itself (sinusoidal encoder positions included); only our own parts here.
        if module is self:
            self.class_weights.fill_(1.0)
            self.class_weights[self.config.rhythm_token_start:self.config.rhythm_token_end] = self.config.rhythm_weight
        elif isinstance(module, MelSpectrogram):
            module.reset_buffers()
        elif module is self.encoder_embedder or module is self.decoder_embedder:
            nn.init.normal_(module.weight, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    @torch.no_grad()
    def align_time_tokens(self) -> None:
        """Start every TIME_SHIFT row of the decoder embedding and of the output projection as the encoder's
        sinusoidal position of that time (10 ms steps -> encoder frames of 2 hops), at the random rows' scale.

        Where an onset is becomes a linear read-out of the cross-attended encoder state instead of 800
        unrelated embeddings to discover one by one: on a CPU budget it is what makes rhythm learnable."""
        c = self.config
        times = torch.arange(c.rhythm_token_end - c.rhythm_token_start, dtype=torch.float64)
        positions = times * 10 * c.sample_rate / (1000 * 2 * c.hop_length)
        rows = encoder_sinusoids(positions, c.backbone_config["d_model"]) * c.init_std * 2 ** 0.5
        for table in (self.decoder_embedder.weight, self.transformer.proj_out.weight):
            table[c.rhythm_token_start:c.rhythm_token_end] = rows.to(table.dtype)

    def encode(self, audio: torch.Tensor) -> BaseModelOutput:
        """(batch, window_samples) raw audio -> encoder states (batch, src_seq_len / 2, d_model)."""
        features = self.spectrogram(audio)
        if self.encoder_embedder is not None:
            features = self.encoder_embedder(features.to(self.encoder_embedder.weight.dtype))
        return self.transformer.model.encoder(features.transpose(1, 2).to(self.dtype))

    def forward(self, audio: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | None = None, past_key_values=None, use_cache: bool | None = None,
                decoder_position_ids: torch.Tensor | None = None, labelled_logits_only: bool = False,
                **kwargs) -> Seq2SeqLMOutput:
        """Logits (batch, tokens, vocab); with `labelled_logits_only` just the rows where labels != -100,
        (n, vocab) in order: training never pays the output projection for prompts and padding."""
        if encoder_outputs is None:
            encoder_outputs = self.encode(audio)
        out = self.transformer.model(
            encoder_outputs=encoder_outputs, decoder_inputs_embeds=self.decoder_embedder(decoder_input_ids),
            decoder_attention_mask=decoder_attention_mask, past_key_values=past_key_values, use_cache=use_cache,
            decoder_position_ids=decoder_position_ids,
        )
        hidden = out.last_hidden_state
        if labelled_logits_only:
            labelled = labels != IGNORE_INDEX
            hidden, labels = hidden[labelled], labels[labelled]
        logits = self.transformer.proj_out(hidden)
        loss = self.loss(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values,
                               encoder_last_hidden_state=encoder_outputs.last_hidden_state)

    @torch.no_grad()
    def new_cache(self, encoder_states: torch.Tensor, capacity: int) -> "DecoderCache":
        """An empty decoding cache for `capacity` tokens, with every layer's cross-attention keys and
        values computed once from the encoder states (batch, frames, d_model).

        On a CPU the cache, and so attention, is fp32 whatever the weights: CPU attention over a few
        query rows runs about 10x slower in bf16 than in fp32."""
        layers = self.transformer.model.decoder.layers
        attention = layers[0].self_attn
        device, weights = encoder_states.device.type, self.decoder_embedder.weight.dtype
        compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weights
        dtype = torch.float32 if device == "cpu" else compute
        if not torch.is_autocast_enabled(device):  # states encoded under autocast, decoded without it
            encoder_states = encoder_states.to(weights)
        empty = lambda: encoder_states.new_zeros(encoder_states.shape[0], attention.num_heads, capacity, attention.head_dim,
                                                 dtype=dtype)
        project = lambda linear: _heads(linear(encoder_states), attention.num_heads).to(dtype)
        cross_keys = [project(layer.encoder_attn.k_proj) for layer in layers]
        return DecoderCache(
            steps=self.step_layers or [StepLayer.of(layer, int8=False) for layer in layers],
            self_keys=[empty() for _ in layers], self_values=[empty() for _ in layers],
            cross_keys=cross_keys, cross_keys_t=[keys.transpose(-1, -2).contiguous() for keys in cross_keys],
            cross_values=[project(layer.encoder_attn.v_proj) for layer in layers],
            valid=torch.zeros(encoder_states.shape[0], capacity, dtype=torch.bool, device=encoder_states.device),
        )

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, cache: "DecoderCache") -> torch.Tensor:
        """Next-token logits (batch, vocab) after appending `ids` (batch, n) at `positions` to the cache:
        first the left-padded prompts (`valid` False for padding), then one token per row at a time.

        The decoder's forward pass written out for incremental decoding: the same weights and maths as
        `forward`, without its per-call overhead, which at batch 1 costs more than the arithmetic. Each
        prompt is prefilled on its own, without its padding, so attention takes the fast causal path."""
        decoder = self.transformer.model.decoder
        start, count = cache.length, ids.shape[1]
        if count > 1 and start:
            raise ValueError("decode takes several tokens only as the first call (the prompts)")
        cache.valid[:, start:start + count] = valid
        cache.length = start + count
        hidden = self.decoder_embedder(ids) + decoder.embed_positions.weight[positions]
        if start:  # one new token per row: only the prompts can hold padding
            mask = cache.valid[:, None, None, :cache.length] if cache.padded else None
            hidden = self._decoder_step(hidden, cache, mask)
        else:
            cache.padded = not bool(valid.all())
            last = []
            for row in range(ids.shape[0]):
                first = int((~valid[row]).sum())  # this prompt's left padding
                last.append(self._decoder_prompt(hidden[row:row + 1, first:], cache, row, first)[:, -1:])
            hidden = torch.cat(last)
        hidden = decoder.layer_norm(hidden[:, -1])
        return self.transformer.proj_out(hidden) if self.int8_proj_out is None else self.int8_proj_out(hidden)

    def _decoder_prompt(self, hidden: torch.Tensor, cache: "DecoderCache", row: int, start: int) -> torch.Tensor:
        """The decoder layers over one prompt without its padding (1, tokens, d_model), cached from `start`
        of the cache's `row`; it attends causally to itself only."""
        end, rows = start + hidden.shape[1], slice(row, row + 1)
        for i, layer in enumerate(self.transformer.model.decoder.layers):
            attention = layer.self_attn
            x = layer.self_attn_layer_norm(hidden)
            query = _heads(attention.q_proj(x), attention.num_heads)
            cache.self_keys[i][rows, :, start:end] = _heads(attention.k_proj(x), attention.num_heads)
            cache.self_values[i][rows, :, start:end] = _heads(attention.v_proj(x), attention.num_heads)
            keys, values = cache.self_keys[i][rows, :, start:end], cache.self_values[i][rows, :, start:end]
            hidden = hidden + attention.out_proj(_merge(F.scaled_dot_product_attention(
                query.to(keys.dtype), keys, values, is_causal=hidden.shape[1] > 1, scale=attention.scaling)).to(x.dtype))
            cross = layer.encoder_attn
            x = layer.encoder_attn_layer_norm(hidden)
            query = _heads(cross.q_proj(x), cross.num_heads)
            keys, values = cache.cross_keys[i][rows], cache.cross_values[i][rows]
            hidden = hidden + cross.out_proj(_merge(F.scaled_dot_product_attention(
                query.to(keys.dtype), keys, values, scale=cross.scaling)).to(x.dtype))
            x = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(x)))
        return hidden

    def _decoder_step(self, hidden: torch.Tensor, cache: "DecoderCache", mask: torch.Tensor | None) -> torch.Tensor:
        """The decoder layers over one new token per row (batch, 1, d_model), cached at the cache's last
        place; it attends to every cached token that `mask` (batch, 1, 1, length) allows.

        Written for a CPU's one-token steps, where the arithmetic is small and each tensor operation's
        overhead is not: the layers' `StepLayer` weights (query, key and value in one product), rows kept
        2-D and attention as two batched matrix products: about 1.4x faster per step than the layers'
        own modules with `scaled_dot_product_attention` (bench/RESULTS.md)."""
        end, rows = cache.length, hidden[:, 0]
        for i, (layer, step) in enumerate(zip(self.transformer.model.decoder.layers, cache.steps)):
            x = layer.self_attn_layer_norm(rows)
            query, key, value = step.qkv(x).view(x.shape[0], 3, step.heads, -1).unbind(1)
            cache.self_keys[i][:, :, end - 1] = key
            cache.self_values[i][:, :, end - 1] = value
            keys, values = cache.self_keys[i][:, :, :end].transpose(-1, -2), cache.self_values[i][:, :, :end]
            rows = rows + step.out(_attend(query, keys, values, step.scaling, mask).to(x.dtype))
            x = layer.encoder_attn_layer_norm(rows)
            query = step.cross_query(x).view(x.shape[0], step.heads, -1)
            rows = rows + step.cross_out(_attend(query, cache.cross_keys_t[i], cache.cross_values[i], step.scaling).to(x.dtype))
            x = layer.final_layer_norm(rows)
            rows = rows + step.fc2(layer.activation_fn(step.fc1(x)))
        return rows[:, None]

    def prepare_steps(self, int8: bool = False) -> None:
        """Build the one-token steps' weights once for inference (else every window's cache builds them,
        so that they always follow the current weights). With `int8` (CPU only) the steps and the output
        projection get int8 copies: a step is bound by reading the weights, and the int8 kernel runs 2-6x
        faster than bf16 (bench/RESULTS.md). Prompts and training keep the originals."""
        self.step_layers = [StepLayer.of(layer, int8) for layer in self.transformer.model.decoder.layers]
        self.int8_proj_out = StepLinear.of([self.transformer.proj_out], int8=True) if int8 else None

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with `rhythm_weight` on TIME_SHIFT targets, summed and divided by the labelled count."""
        per_token = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.flatten(), weight=self.class_weights.float(),
                                    ignore_index=IGNORE_INDEX, reduction="none")
        return per_token.sum() / (labels != IGNORE_INDEX).sum().clamp(min=1)


@dataclass
class StepLinear:
    """A linear map for one-token steps: the `weight` rows (out, in) and `bias` of one or more stacked
    linear layers, as they are or as int8 with one `scales` entry per row (CPU)."""
    weight: torch.Tensor
    bias: torch.Tensor
    scales: torch.Tensor | None = None

    @classmethod
    def of(cls, linears: list[nn.Linear], int8: bool) -> "StepLinear":
        """The layers' outputs concatenated in one map (one layer's weight is shared, not copied); a layer
        without a bias adds zeros."""
        weights = [linear.weight.detach() for linear in linears]
        biases = [linear.bias.detach() if linear.bias is not None else weights[0].new_zeros(linear.out_features)
                  for linear in linears]
        weight, bias = (weights[0], biases[0]) if len(linears) == 1 else (torch.cat(weights), torch.cat(biases))
        if not int8:
            return cls(weight, bias)
        rows = weight.float()
        scales = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
        return cls(torch.round(rows / scales[:, None]).to(torch.int8), bias, scales.to(weight.dtype))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scales is None:
            return F.linear(x, self.weight, self.bias)
        return torch._weight_int8pack_mm(x, self.weight, self.scales) + self.bias


@dataclass
class StepLayer:
    """One decoder layer's linear maps for one-token steps (`Mapperatorinator._decoder_step`)."""
    qkv: StepLinear
    out: StepLinear
    cross_query: StepLinear
    cross_out: StepLinear
    fc1: StepLinear
    fc2: StepLinear
    heads: int
    scaling: float

    @classmethod
    def of(cls, layer: nn.Module, int8: bool) -> "StepLayer":
        """The maps of a Whisper decoder layer, as they are (shared, but for the stacked query-key-value) or int8."""
        attention, cross = layer.self_attn, layer.encoder_attn
        linear = lambda *linears: StepLinear.of(list(linears), int8)
        return cls(linear(attention.q_proj, attention.k_proj, attention.v_proj), linear(attention.out_proj),
                   linear(cross.q_proj), linear(cross.out_proj), linear(layer.fc1), linear(layer.fc2),
                   attention.num_heads, attention.scaling)


@dataclass
class DecoderCache:
    """Per decoder layer: the weights of one-token steps, self-attention keys and values in buffers for
    the whole window (filled up to `length`), and the cross-attention ones over the audio, the keys also
    transposed (batch, heads, head_dim, frames) and contiguous: the layout `_attend`'s matrix product
    reads fastest, while `scaled_dot_product_attention` over a prompt runs 2x slower on it; `valid`
    marks the non-padding tokens."""
    steps: list[StepLayer]
    self_keys: list[torch.Tensor]
    self_values: list[torch.Tensor]
    cross_keys: list[torch.Tensor]
    cross_keys_t: list[torch.Tensor]
    cross_values: list[torch.Tensor]
    valid: torch.Tensor
    length: int = 0
    padded: bool = False


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, d_model) -> (batch, heads, tokens, head_dim)."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, head_dim) -> (batch, tokens, d_model)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def _attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scaling: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of one query row per batch row (batch, heads, head_dim) over cached `keys` (batch, heads,
    head_dim, length) and `values` (batch, heads, length, head_dim), computed in the cache's dtype;
    returns (batch, heads * head_dim)."""
    batch, heads, head_dim, length = keys.shape
    scores = torch.bmm(query.reshape(batch * heads, 1, head_dim).to(keys.dtype) * scaling,
                       keys.reshape(batch * heads, head_dim, length))
    if mask is not None:
        scores = scores.masked_fill(~mask.expand(batch, heads, 1, length).reshape(batch * heads, 1, length), -math.inf)
    return torch.bmm(torch.softmax(scores, dim=-1), values.reshape(batch * heads, length, head_dim)).view(batch, -1)


def encoder_sinusoids(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """Whisper's fixed encoder position code (sin half, then cos half) at possibly fractional positions."""
    increment = math.log(10000) / (channels // 2 - 1)
    angles = positions[:, None] * torch.exp(-increment * torch.arange(channels // 2, dtype=positions.dtype))
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def model_config(backbone: dict, mel: dict, tokenizer: Tokenizer, tgt_seq_len: int, rhythm_weight: float,
                 project_encoder_input: bool, time_token_init: str = "learned") -> MapperatorinatorConfig:
    """The model config for a tokenizer: window size, vocabulary sizes and the TIME_SHIFT range come from its layout."""
    t = tokenizer.config
    return MapperatorinatorConfig(
        backbone_config=dict(backbone), vocab_size_in=tokenizer.vocab_size_in, vocab_size=tokenizer.vocab_size_out,
        src_seq_len=t.src_seq_len, hop_length=t.hop_length, sample_rate=t.sample_rate,
        tgt_seq_len=tgt_seq_len, rhythm_weight=rhythm_weight,
        rhythm_token_start=tokenizer.event_start[EventType.TIME_SHIFT], rhythm_token_end=tokenizer.event_end[EventType.TIME_SHIFT],
        project_encoder_input=project_encoder_input, time_token_init=time_token_init, **mel,
    )


def save_model(model: Mapperatorinator, tokenizer: Tokenizer, folder: str | os.PathLike) -> None:
    """A self-contained folder inference loads: config.json, model.safetensors, tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save(folder / "tokenizer.json")


def load_model(folder: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> tuple[Mapperatorinator, Tokenizer]:
    """Model and tokenizer from a folder written by `save_model` (never touches the network)."""
    folder = Path(folder)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a model folder: {name} is missing")
    transformers_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise for users
    model = Mapperatorinator.from_pretrained(folder, dtype=dtype, local_files_only=True)
    model.freeze_fixed_parameters()
    model.spectrogram.reset_buffers()  # exact fp32 filters even from a bf16 file
    return model.to(device).eval(), Tokenizer.load(folder / "tokenizer.json")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pad_to_window(audio: torch.Tensor, samples: int) -> torch.Tensor:
    """Right-pad (or cut) the last axis to exactly `samples`: the Whisper encoder needs fixed-size windows."""
    length = audio.shape[-1]
    if length >= samples:
        return audio[..., :samples]
    return F.pad(audio, (0, samples - length))

