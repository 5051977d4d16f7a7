"""Train the position refiner: `python osu_diffusion/train.py -cn diffusion_tiny data.root=PATH`
(or `accelerate launch osu_diffusion/train.py -cn diffusion_v29 ...` on GPUs).

ε-prediction on steps [0, max_step) of the cosine schedule, with EMA weights: the EMA model is what
checkpoints and the final folder hold for sampling. Checkpoints resume exactly (model, optimizer,
scheduler, EMA, RNG, position in the epoch).
"""
from __future__ import annotations

import copy
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from osu_diffusion.dataset import Augment, SequenceDataset, beatmap_paths, class_layout, load_maps
from osu_diffusion.diffusion import Schedule, normalise
from osu_diffusion.model import DiT, DiTConfig, save_dit
from osuT5.train import (STATE_FILE, TrainingError, checkpoints, cosine_schedule, make_accelerator, publish_checkpoint,
                         run_command, start_tracking)
from tokenizer.vocabulary import TokenizerConfig

log = logging.getLogger("train_diffusion")


class EMA(torch.nn.Module):
    """An exponential moving average of a model's weights (a module, so accelerate checkpoints it)."""

    def __init__(self, model: DiT, decay: float):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for average, current in zip(self.model.parameters(), model.parameters()):
            average.lerp_(current.detach(), 1 - self.decay)


def loss_on(model, schedule: Schedule, batch: dict, max_step: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared error of the predicted noise over the real, movable objects."""
    x0 = normalise(batch["positions"])
    steps = torch.randint(0, max_step, (len(x0),), device=x0.device, generator=generator)
    eps = torch.randn(x0.shape, device=x0.device, generator=generator)
    predicted = model(schedule.noise(x0, steps, eps), steps, batch["times"], batch["distances"], batch["types"],
                      batch["classes"], batch["padding"])
    mask = batch["loss_mask"].float()[..., None]
    return ((predicted.float() - eps) ** 2 * mask).sum() / (mask.sum() * 2).clamp(min=1)


def noise_generator(seed: int, state: dict, rank: int, device: torch.device) -> torch.Generator:
    """The noise of each micro-batch depends only on (seed, epoch, batch, rank), so a resumed run draws what
    the killed run would have drawn, whatever else used the global RNG in between."""
    key = np.random.SeedSequence([seed, state["epoch"], state["batch_in_epoch"], rank]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(key))


@torch.no_grad()
def validate(model, schedule: Schedule, loader: DataLoader, max_step: int, device: torch.device) -> float:
    """Val loss with a fixed noise draw, so numbers compare across steps."""
    generator = torch.Generator(device=device).manual_seed(0)
    losses = [float(loss_on(model, schedule, batch, max_step, generator)) for batch in loader]
    return sum(losses) / max(len(losses), 1)


def save_checkpoint(accelerator: Accelerator, folder: Path, state: dict, ema: EMA, keep: int) -> None:
    """The training state plus the EMA model as a refiner folder (`ema/`) that sampling loads directly."""
    publish_checkpoint(accelerator, folder, state, keep, lambda partial: save_dit(ema.model, partial / "ema"))


def train(cfg: DictConfig) -> Path:
    output_dir = Path(cfg.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    opt = cfg.optim
    accelerator = make_accelerator(cfg)
    data, modes = cfg.data, list(cfg.data.gamemodes)
    tokenizer_config = TokenizerConfig.from_yaml(cfg.tokenizer)
    train_maps = load_maps(beatmap_paths(data.root, data.train_split, modes, data.text_only_root), modes, tokenizer_config)
    if not train_maps:
        raise TrainingError(f"no std or catch beatmaps for split '{data.train_split}' in {data.root}")
    val_maps = load_maps(beatmap_paths(data.root, data.val_split, modes, None), modes, tokenizer_config) if data.val_split else []

    resume_from = checkpoints(checkpoint_dir)[-1] if cfg.resume and checkpoint_dir.exists() else None
    if resume_from is not None:
        config = DiTConfig.from_dict(json.loads((resume_from / "ema" / "config.json").read_text()))
    else:
        config = DiTConfig(**OmegaConf.to_container(cfg.model, resolve=True),
                           classes=class_layout(train_maps, tokenizer_config.descriptors, data.min_mapper_maps))
    model = DiT(config)
    ema = EMA(model, opt.ema_decay)
    log.info("refiner: %.2f M parameters, %d mapper classes", sum(p.numel() for p in model.parameters()) / 1e6,
             len(config.classes.mappers))

    augment = Augment(**OmegaConf.to_container(data.augment, resolve=True))
    train_set = SequenceDataset(train_maps, config.classes, data.seq_len, data.stride, augment, cfg.seed)
    micro_batch = opt.batch_size // opt.grad_acc
    train_loader = DataLoader(train_set, batch_size=micro_batch, drop_last=True, num_workers=data.num_workers)
    val_loader = None
    if val_maps:
        val_set = SequenceDataset(val_maps, config.classes, data.seq_len, data.seq_len, None, cfg.seed)
        val_loader = DataLoader(val_set, batch_size=micro_batch)

    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(opt.warmup_steps, opt.max_steps, opt.final_lr_ratio))
    model, optimizer, scheduler, train_loader = accelerator.prepare(model, optimizer, scheduler, train_loader)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    schedule = Schedule()

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = json.loads((resume_from / STATE_FILE).read_text())
        log.info("resumed from %s at step %d", resume_from.name, state["step"])
    start_tracking(accelerator, cfg)

    progress = tqdm(total=opt.max_steps, initial=state["step"], disable=not accelerator.is_local_main_process,
                    desc="training refiner", dynamic_ncols=True)
    loss_sum, loss_n, started = 0.0, 0, time.perf_counter()
    model.train()
    while state["step"] < opt.max_steps:
        train_set.plan_epoch(state["epoch"])
        loader = accelerator.skip_first_batches(train_loader, state["batch_in_epoch"]) if state["batch_in_epoch"] else train_loader
        for batch in loader:
            state["batch_in_epoch"] += 1
            with accelerator.accumulate(model):
                loss = loss_on(model, schedule, batch, cfg.diffusion.max_step,
                               noise_generator(cfg.seed, state, accelerator.process_index, accelerator.device))
                accelerator.backward(loss)
                if accelerator.sync_gradients and opt.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), opt.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
            if not accelerator.sync_gradients:
                continue
            ema.update(accelerator.unwrap_model(model))
            state["step"] += 1
            progress.update(1)
            step = state["step"]
            if step % cfg.log_every == 0 or step == opt.max_steps:
                metrics = {"train_loss": loss_sum / loss_n, "lr": scheduler.get_last_lr()[0],
                           "sequences_per_s": loss_n * micro_batch * accelerator.num_processes / (time.perf_counter() - started)}
                log.info("step %d | loss %.4f | lr %.2e | %.1f sequences/s", step, metrics["train_loss"], metrics["lr"],
                         metrics["sequences_per_s"])
                progress.set_postfix(loss=f"{metrics['train_loss']:.4f}")
                accelerator.log(metrics, step=step)
                loss_sum, loss_n, started = 0.0, 0, time.perf_counter()
            if val_loader is not None and (step % cfg.eval_every == 0 or step == opt.max_steps):
                val_loss = validate(ema.model, schedule, val_loader, cfg.diffusion.max_step, accelerator.device)
                log.info("eval step %d | val_loss (EMA) %.4f", step, val_loss)
                accelerator.log({"val_loss": val_loss}, step=step)
            if step % cfg.checkpoint_every == 0 or step == opt.max_steps:
                save_checkpoint(accelerator, checkpoint_dir, state, ema, cfg.keep_checkpoints)
            if step >= opt.max_steps:
                break
        else:
            state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
            continue
        break
    progress.close()
    final_dir = output_dir / "model"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_dit(ema.model, final_dir)
        (final_dir / "training.json").write_text(json.dumps({"steps": state["step"], "config": asdict(config)}, indent=2))
        log.info("saved the EMA refiner to %s", final_dir)
    accelerator.end_training()
    return final_dir


@hydra.main(version_base="1.3", config_path="../configs", config_name="diffusion_tiny")
def main(cfg: DictConfig) -> None:
    run_command(train, cfg, "beatmaps")


if __name__ == "__main__":
    main()
