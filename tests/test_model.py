"""The generator model: mel front end, forward pass and loss, save/load, greedy decoding."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers.modeling_outputs import BaseModelOutput

from osuT5.export import main as export_main
from osuT5.generate import WindowRules, decode_window
from osuT5.logits import SamplingConfig, TokenKinds
from osuT5.model import IGNORE_INDEX, Mapperatorinator, StepLinear, load_model, model_config, pad_to_window, save_model
from tokenizer.events import EventType

SMALL_BACKBONE = dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128)
LOG_HTK = dict(n_fft=1024, n_mels=64, f_min=20.0, f_max=8000.0, mel_scale="htk", mel_norm=None,
               spectrogram_log_scale=True, pad_mode="reflect")
V29_MEL = dict(n_fft=1024, n_mels=388, f_min=0.0, f_max=8000.0, mel_scale="slaney", mel_norm="slaney",
               spectrogram_log_scale=False, pad_mode="constant")


@pytest.fixture(scope="module")
def small_model(tokenizer):
    torch.manual_seed(0)
    return Mapperatorinator(model_config(SMALL_BACKBONE, LOG_HTK, tokenizer, 256, 3.0, True)).eval()


def sine(freq: float, samples: int, rate: int = 16000) -> torch.Tensor:
    return torch.sin(2 * torch.pi * freq * torch.arange(samples) / rate)


@pytest.mark.parametrize("mel", [LOG_HTK, V29_MEL], ids=["log-htk", "v29-slaney-power"])
def test_mel_frames_and_peak_frequency(tokenizer, mel):
    model = Mapperatorinator(model_config(SMALL_BACKBONE, mel, tokenizer, 64, 3.0, True))
    samples = model.config.window_samples
    spec = model.spectrogram(sine(1000.0, samples)[None])
    assert spec.shape == (1, 1024, mel["n_mels"])  # (1023 * 128) / 128 + 1 frames: centre padding
    centres = model.spectrogram.filters.argmax(0).float() * 16000 / 1024  # each filter's peak FFT bin in Hz
    assert abs(float(centres[spec[0, 512].argmax()]) - 1000.0) < 60.0
    assert spec.dtype == torch.float32 and bool((spec >= 0).all())


def test_mel_stays_fp32_under_autocast(small_model):
    audio = sine(440.0, small_model.config.window_samples)[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = small_model.spectrogram(audio)
    assert spec.dtype == torch.float32


def test_v29_layout_sizes(tokenizer):
    config = model_config(SMALL_BACKBONE, V29_MEL, tokenizer, 2048, 3.0, True)
    assert (config.vocab_size, config.src_seq_len, config.window_samples) == (3667, 1024, 130944)
    whisper = config.whisper_config()
    assert (whisper.max_source_positions, whisper.num_mel_bins, whisper.vocab_size) == (512, 64, 3667)
    assert whisper.suppress_tokens == [] and whisper.begin_suppress_tokens == [] and not whisper.tie_word_embeddings
    assert (config.rhythm_token_start, config.rhythm_token_end) == (17, 17 + 819)


def test_named_modules_follow_upstream(small_model):
    names = {name for name, _ in small_model.named_children()}
    assert {"spectrogram", "encoder_embedder", "decoder_embedder", "transformer"} <= names
    assert small_model.decoder_embedder.num_embeddings == small_model.config.vocab_size_in
    assert small_model.transformer.proj_out.out_features == small_model.config.vocab_size


def test_loss_weights_time_shift_targets(small_model, tokenizer):
    audio = sine(440.0, small_model.config.window_samples)[None]
    inputs = torch.tensor([[1, 20, 30, 40]])
    time_id, other_id = tokenizer.event_start[EventType.TIME_SHIFT] + 5, tokenizer.event_start[EventType.CIRCLE]
    labels = torch.tensor([[time_id, other_id, IGNORE_INDEX, IGNORE_INDEX]])
    out = small_model(audio=audio, decoder_input_ids=inputs, labels=labels)
    ce = F.cross_entropy(out.logits[0, :2].float(), labels[0, :2], reduction="none")
    assert torch.allclose(out.loss, (3.0 * ce[0] + ce[1]) / 2, atol=1e-5)  # weighted sum / labelled count


def test_save_and_load_round_trip(small_model, tokenizer, tmp_path):
    save_model(small_model, tokenizer, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    loaded, loaded_tokenizer = load_model(tmp_path / "m")
    audio = sine(440.0, small_model.config.window_samples)[None]
    ids = torch.tensor([[1, 100, 200, 300]])
    with torch.no_grad():
        assert torch.allclose(small_model(audio=audio, decoder_input_ids=ids).logits,
                              loaded(audio=audio, decoder_input_ids=ids).logits, atol=1e-5)
    assert loaded_tokenizer.to_dict() == tokenizer.to_dict()


def test_a_loaded_model_trains_the_same_parameters_as_a_new_one(small_model, tokenizer, tmp_path):
    """Fine-tuning from a saved model (pretrained_path) must keep the fixed encoder positions and the
    unused backbone token embedding frozen, or DDP stops on an unused parameter."""
    save_model(small_model, tokenizer, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    frozen = {name for name, p in small_model.named_parameters() if not p.requires_grad}
    assert frozen == {"transformer.model.encoder.embed_positions.weight", "transformer.model.decoder.embed_tokens.weight"}
    assert {name for name, p in loaded.named_parameters() if not p.requires_grad} == frozen


def test_checkpoint_without_buffers_recomputes_them(small_model, tokenizer, tmp_path):
    """Weights from elsewhere (e.g. converted v29 state dicts) need not carry the mel filters or loss weights."""
    save_model(small_model, tokenizer, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    for key in ("spectrogram.window", "spectrogram.filters", "class_weights"):
        del weights[key]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded, _ = load_model(tmp_path)
    assert torch.equal(loaded.spectrogram.filters, small_model.spectrogram.filters)
    assert torch.equal(loaded.class_weights, small_model.class_weights)


def test_export_halves_the_weights_and_loads_back_in_fp32(small_model, tokenizer, tmp_path, capsys):
    save_model(small_model, tokenizer, tmp_path / "full")
    assert export_main([str(tmp_path / "full"), str(tmp_path / "half")]) == 0
    assert "MiB of bf16 weights" in capsys.readouterr().out
    full, half = (tmp_path / d / "model.safetensors" for d in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = load_model(tmp_path / "half")
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded.spectrogram.filters, small_model.spectrogram.filters)  # recomputed, not rounded
    audio = sine(440.0, small_model.config.window_samples)[None]
    ids = torch.tensor([[1, 100, 200, 300]])
    with torch.no_grad():
        expected = small_model(audio=audio, decoder_input_ids=ids).logits
        assert torch.allclose(loaded(audio=audio, decoder_input_ids=ids).logits, expected, atol=0.05 * expected.abs().max())
    assert export_main([str(tmp_path / "full"), str(tmp_path / "half")]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_load_model_names_the_missing_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_model(tmp_path)


def test_pad_to_window():
    assert pad_to_window(torch.ones(2, 10), 16).shape == (2, 16)
    assert pad_to_window(torch.ones(2, 20), 16).shape == (2, 16)
    assert float(pad_to_window(torch.ones(10), 16)[10:].abs().sum()) == 0.0


def test_greedy_decode_with_cache_matches_full_recompute(small_model, tokenizer):
    audio = sine(300.0, small_model.config.window_samples)
    prompt = [5, 1]
    rules = WindowRules(eos_ids=frozenset({-1}), max_new_tokens=12)  # nothing stops it early
    sampling = SamplingConfig(do_sample=False)
    cached = decode_window(small_model, small_model.encode(audio[None]), [prompt], TokenKinds(tokenizer), rules, sampling)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(cached)):
            logits = small_model(audio=audio[None], decoder_input_ids=torch.tensor([ids])).logits
            ids.append(int(logits[0, -1].argmax()))
    assert cached == ids[len(prompt):]
    assert np.all(np.array(cached) < small_model.config.vocab_size)


def test_aligned_time_tokens_start_as_encoder_positions_and_survive_a_reload(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = Mapperatorinator(model_config(SMALL_BACKBONE, LOG_HTK, tokenizer, 256, 3.0, True, "aligned"))
    model.align_time_tokens()
    c = model.config
    scale = c.init_std * 2 ** 0.5
    encoder_positions = model.transformer.model.encoder.embed_positions.weight
    time_rows = model.decoder_embedder.weight[c.rhythm_token_start:c.rhythm_token_end]
    # 10 ms steps on 16 ms encoder frames: TIME_SHIFT 8k sits on frame 5k.
    for frame in (0, 5, 250):
        assert torch.allclose(time_rows[8 * frame // 5] / scale, encoder_positions[frame], atol=1e-4)
    assert torch.equal(model.transformer.proj_out.weight[c.rhythm_token_start:c.rhythm_token_end], time_rows)
    assert time_rows.std().item() == pytest.approx(c.init_std, rel=0.1)  # the random rows' scale
    save_model(model, tokenizer, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.config.time_token_init == "aligned"
    assert torch.equal(loaded.decoder_embedder.weight, model.decoder_embedder.weight)
    with pytest.raises(ValueError, match="time_token_init"):
        model_config(SMALL_BACKBONE, LOG_HTK, tokenizer, 256, 3.0, True, "random")


def test_incremental_decode_gives_the_forward_pass_logits_for_a_left_padded_batch(small_model):
    states = small_model.encode(sine(300.0, small_model.config.window_samples)[None]).last_hidden_state
    prompts, follow_ups = [[5, 1, 7, 9, 11], [5, 1, 8], [5]], [13, 14, 15]
    ids = torch.tensor([[0] * (5 - len(p)) + p for p in prompts])
    valid = ids != 0
    positions = (valid.cumsum(-1) - 1).clamp(min=0)
    cache = small_model.new_cache(states.expand(3, -1, -1), 8)
    fast = [small_model.decode(ids, positions, valid, cache)]
    fast.append(small_model.decode(torch.tensor([follow_ups]).T, positions[:, -1:] + 1, torch.ones(3, 1, dtype=torch.bool), cache))
    with torch.no_grad():
        for row, (prompt, follow_up) in enumerate(zip(prompts, follow_ups)):
            full = torch.tensor([prompt + [follow_up]])
            slow = small_model(decoder_input_ids=full, encoder_outputs=BaseModelOutput(last_hidden_state=states)).logits[0]
            torch.testing.assert_close(fast[0][row], slow[-2], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(fast[1][row], slow[-1], rtol=1e-4, atol=1e-5)
    assert cache.length == 6 and cache.padded


def test_a_bf16_model_decodes_with_fp32_attention_on_the_cpu(small_model):
    model = copy.deepcopy(small_model).to(torch.bfloat16)
    audio = sine(300.0, small_model.config.window_samples)[None]
    ids, positions, valid = torch.tensor([[5, 1, 7]]), torch.arange(3)[None], torch.ones(1, 3, dtype=torch.bool)
    logits = []
    for m in (small_model, model):
        cache = m.new_cache(m.encode(audio).last_hidden_state, 4)
        assert cache.self_keys[0].dtype == cache.cross_keys[0].dtype == torch.float32
        logits.append(m.decode(ids, positions, valid, cache).float())
    assert model.decoder_embedder.weight.dtype == torch.bfloat16
    torch.testing.assert_close(logits[1], logits[0], atol=0.05, rtol=0.05)
    labels = torch.tensor([[1, 7, 9]])  # MaiMod scores a real map with the loss of a bf16 model
    with torch.no_grad():
        assert torch.isfinite(model(audio=audio, decoder_input_ids=ids, labels=labels).loss)


def test_a_step_linear_stacks_its_layers_and_its_int8_copy_is_close():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 96).to(torch.bfloat16), torch.nn.Linear(64, 32, bias=False).to(torch.bfloat16)]
    rows = torch.randn(2, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = torch.cat([layer(rows) for layer in layers], dim=-1)
        assert torch.equal(StepLinear.of(layers, int8=False)(rows), expected)
        int8 = StepLinear.of(layers, int8=True)
        assert int8.weight.dtype == torch.int8 and int8.scales.shape == (128,)
        torch.testing.assert_close(int8(rows).float(), expected.float(), atol=0.03, rtol=0.03)


def test_an_int8_decoder_decodes_like_the_bf16_one(small_model):
    bf16 = copy.deepcopy(small_model).to(torch.bfloat16)
    int8 = copy.deepcopy(bf16)
    int8.prepare_steps(int8=True)
    assert all(step.qkv.weight.dtype == step.fc2.weight.dtype == torch.int8 for step in int8.step_layers)
    assert int8.int8_proj_out.weight.dtype == torch.int8 and bf16.step_layers is None
    audio = sine(300.0, small_model.config.window_samples)[None]
    ids, positions, valid = torch.tensor([[5, 1, 7]]), torch.arange(3)[None], torch.ones(1, 3, dtype=torch.bool)
    steps = []
    for m in (bf16, int8):
        cache = m.new_cache(m.encode(audio).last_hidden_state, 8)
        prompt = m.decode(ids, positions, valid, cache)
        step = m.decode(torch.tensor([[9]]), torch.tensor([[3]]), torch.ones(1, 1, dtype=torch.bool), cache)
        steps.append(torch.log_softmax(torch.cat([prompt, step]).float(), -1))
    kl = (steps[0].exp() * (steps[0] - steps[1])).sum(-1)
    assert float(kl.max()) < 1e-3
