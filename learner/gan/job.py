"""The GAN as a Ray Train job: DDP workers alternate discriminator and generator steps.

    driver (gan_cli):  frames .npz built and the game classifier trained BEFORE Ray
                       starts; both cached, read by the workers by absolute path
    every worker:      prepare_model(G), prepare_model(D), prepare_data_loader;
                       per batch: D step, G step (learner.gan.model.train_step)
    rank 0:            metrics (losses/d, losses/g, D(x), D(G(z))) on global/g_updates,
                       a sample grid from fixed noise each epoch (PNG + W&B image) and
                       the quality numbers (learner.gan.quality), both drawn by the
                       moving average of G's weights; the checkpoint state
    every rank:        report(metrics, state) once per epoch -> rank 0's checkpoint

Rerunning the same run name resumes from the newest checkpoint (epoch and update
counters carry on); FailureConfig restarts a failed worker group from it too.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from dqn.precision import bfloat16_passes, layers_of
from dqn.process import torch_process
from learner.gan.average import AveragedGenerator
from learner.gan.config import GanConfig, GanTrainConfig, last_evaluation_scale, planned_epochs
from learner.gan.data import FrameSet, load_frames, split_heldout
from learner.gan.lines import format_quality
from learner.gan.model import (Discriminator, GanParts, Generator, StepSettings, StepStats,
                               adam, generate, to_unit, train_step)
from learner.gan.quality import Judge, Quality, image_grid, load_judge, nchw, write_png
from learner.gan.state import GanState
from learner.train_job import (Progress, all_max, rank, report, restore, run_dir_of,
                               world_size)

STEP_KEY = "global/g_updates"


class DataFiles(NamedTuple):
    """Absolute paths the driver prepared: the frames and the trained classifier."""

    frames: str
    judge: str


def make_train_fn(files: DataFiles, started: float | None = None
                  ) -> Callable[[dict], None]:
    """The workers' loop; `started` (time.time()) is when the command began: on a run's
    first command the time before its first update counts against train.budget_minutes."""
    def train_fn(config: dict) -> None:
        _train(config["cfg"], files, started)
    return train_fn


def fixed_inputs(cfg: GanConfig, num_classes: int, n: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The grid's noise (the same every epoch and every run of a seed) and its labels:
    blocks of equal size per class, so each game fills its own rows."""
    gen = torch.Generator().manual_seed(cfg.run.seed)
    z = torch.randn(n, cfg.model.latent_size, generator=gen)
    labels = torch.arange(n) * num_classes // n if cfg.model.conditional else None
    return z, labels


def _train(cfg: GanConfig, files: DataFiles, started: float | None = None) -> None:
    import ray.train.torch

    torch_process(int(cfg.ray.cpus_per_worker))
    torch.manual_seed(cfg.run.seed * 1000 + rank())  # each rank draws its own noise
    train, heldout = split_heldout(load_frames(Path(files.frames)),
                                   cfg.data.heldout_fraction, cfg.run.seed)
    state = restore(GanState)
    parts, epoch, updates = _build(cfg, train, state)
    ema = _averaged(cfg, parts, state, updates)
    t = cfg.train
    seconds = state.train_seconds if state is not None else 0.0
    # Frames, judge and Ray's start: the same on every rank (one clock for all)
    before = (state.start_seconds if state is not None else
              all_max(max(0.0, time.time() - started)) if started is not None else 0.0)
    longest = state.longest_evaluation if state is not None else 0.0
    last_scale = last_evaluation_scale(cfg.quality)   # the last epoch's evaluation
    planned = planned_epochs(t, epoch, seconds, before, longest * last_scale)
    if epoch >= planned:  # already trained: hand back the last numbers
        report(state.last_metrics)
        return
    loader, sampler = _loader(cfg, train)
    lead = _Lead(cfg, files, heldout, state) if rank() == 0 else None
    total = planned * len(loader)  # generator updates of the whole run, as planned now
    progress = Progress(total, "G updates", start=updates)
    device = ray.train.torch.get_device()
    layers = tuple(sorted({*layers_of(parts.generator), *layers_of(parts.discriminator)}))
    bf16 = bfloat16_passes(t.precision, device, layers, avx512_bf16=True)
    passes = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    if lead is not None:
        print(f"[gan] training passes in {'bfloat16' if bf16 else 'float32'} on {device} "
              f"(train.precision={t.precision})", flush=True)
    step = StepSettings.of(cfg)
    while epoch < planned:
        sampler.set_epoch(epoch)
        sums, count, t0 = np.zeros(len(StepStats._fields)), 0, time.monotonic()
        for images, labels in loader:
            scale = learning_rate_scale(t, updates, total)
            set_step_sizes(parts, t, scale)
            real = to_unit(images.to(device)).contiguous(memory_format=torch.channels_last)
            with passes:
                stats = train_step(parts, real,
                                   labels.to(device) if cfg.model.conditional else None,
                                   step)
            updates += 1
            if ema is not None:
                ema.update(_unwrap(parts.generator))
            sums, count = sums + stats, count + 1
            if lead is not None and updates % cfg.train.log_every_updates == 0:
                lead.log_losses(updates, sums / count, progress, t.lr_g * scale)
                sums, count = np.zeros(len(StepStats._fields)), 0
        epoch += 1
        metrics = {"epoch": epoch, "g_updates": updates,
                   "charts/epoch_seconds": time.monotonic() - t0}
        # The budget's plan, from the slowest rank's clock, so every rank agrees.
        planned = planned_epochs(t, epoch, seconds + all_max(time.monotonic() - t0), before,
                                 longest * last_scale)
        progress.total = total = planned * len(loader)
        saved, evaluating = None, time.monotonic()
        if lead is not None:
            drawer = (ema.ready(seed=cfg.run.seed) if ema is not None
                      else _unwrap(parts.generator))
            live = (_unwrap(parts.generator) if ema is not None and cfg.quality.keep_live
                    else None)
            metrics.update(lead.end_epoch(epoch, updates, drawer, last=epoch >= planned,
                                          early=updates < t.lr_decay_start * total,
                                          live=live))
            seconds_now = seconds + time.monotonic() - t0
            saved = _state(cfg, files, train.names, parts, epoch, updates, metrics)
            saved.train_seconds, saved.start_seconds = seconds_now, before
            if ema is not None:
                saved.generator_ema = ema.model.state_dict()
            saved.best, saved.generator_best = lead.best, lead.best_weights
        longest = max(longest, all_max(time.monotonic() - evaluating))  # scores, checkpoint
        if saved is not None:  # a resumed run plans with the value every rank agreed on
            saved.longest_evaluation = longest
        report(metrics, saved)
        seconds += all_max(time.monotonic() - t0)  # the whole epoch: scores and report too
    if lead is not None:
        lead.close()


def _build(cfg: GanConfig, train: FrameSet, state: GanState | None
           ) -> tuple[GanParts, int, int]:
    """Both networks (restored when `state` is given) wrapped for DDP, their
    optimizers, and the epoch and generator-update counters to carry on from."""
    import ray.train.torch

    classes = len(train.names)
    g = Generator(cfg.model, cfg.data.image_size, classes)
    d = Discriminator(cfg.model, cfg.data.image_size, classes)
    if (cfg.model.d_residual or cfg.model.g_mean_frame) and state is None:
        means = class_means(train, cfg.model.conditional)  # restored nets bring their own
        if cfg.model.d_residual:
            d.mean_frames.copy_(means)
        if cfg.model.g_mean_frame:
            g.start_from_mean_frames(means)
    if state is not None:
        g.load_state_dict(state.generator)
        d.load_state_dict(state.discriminator)
    # Channels-last convolutions: 1.27x the updates/s of NCHW on a 2-core CPU, same maths.
    g, d = (ray.train.torch.prepare_model(m.to(memory_format=torch.channels_last))
            for m in (g, d))
    # Optimizers after prepare_model, so their state loads onto the params' device.
    opt_g = adam(g, cfg.train.lr_g, cfg.train.beta1)
    opt_d = adam(d, cfg.train.lr_d, cfg.train.beta1)
    if state is None:
        return GanParts(g, d, opt_g, opt_d), 0, 0
    opt_g.load_state_dict(state.opt_g)
    opt_d.load_state_dict(state.opt_d)
    return GanParts(g, d, opt_g, opt_d), state.epoch, state.g_updates


def class_means(frames: FrameSet, per_class: bool) -> torch.Tensor:
    """Each class's mean frame (one for all when not per_class) in [-1, 1], NCHW."""
    groups = ([frames.images[frames.labels == c] for c in range(len(frames.names))]
              if per_class else [frames.images])
    means = np.stack([g.mean(axis=0) if len(g) else np.full(g.shape[1:], 127.5)
                      for g in groups])
    return to_unit(torch.from_numpy(means).permute(0, 3, 1, 2))


def learning_rate_scale(t: GanTrainConfig, updates: int, total: int) -> float:
    """The step sizes' share of train.lr_g / lr_d at update `updates` of `total`: 1, then
    a straight line to 0 at the end from train.lr_decay_start of the run on."""
    start = t.lr_decay_start * total
    if updates < start or start >= total:
        return 1.0
    return max(0.0, (total - updates) / (total - start))


def set_step_sizes(parts: GanParts, t: GanTrainConfig, scale: float) -> None:
    for opt, lr in ((parts.opt_g, t.lr_g), (parts.opt_d, t.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * scale


def _averaged(cfg: GanConfig, parts: GanParts, state: GanState | None, updates: int
              ) -> AveragedGenerator | None:
    """The moving average of the generator (restored from `state`), or None when
    `train.ema_decay` is 0."""
    if cfg.train.ema_decay == 0:
        return None
    ema = AveragedGenerator(_unwrap(parts.generator), cfg.train.ema_decay, updates)
    if state is not None and state.generator_ema is not None:
        ema.model.load_state_dict(state.generator_ema)
    return ema


def _state(cfg: GanConfig, files: DataFiles, names: tuple[str, ...], parts: GanParts,
           epoch: int, updates: int, metrics: dict[str, float]) -> GanState:
    """What a checkpoint holds: enough to resume, to sample and to score."""
    return GanState(cfg.to_dict(), tuple(names), files._asdict(), epoch, updates,
                    _unwrap(parts.generator).state_dict(),
                    _unwrap(parts.discriminator).state_dict(),
                    parts.opt_g.state_dict(), parts.opt_d.state_dict(), metrics)


def _loader(cfg: GanConfig, train: FrameSet) -> tuple[DataLoader, DistributedSampler]:
    import ray.train.torch

    dataset = TensorDataset(nchw(train.images), torch.from_numpy(train.labels))
    # Our own sampler (prepare_data_loader keeps a DistributedSampler it is given),
    # so shuffling follows run.seed and set_epoch on every worker count.
    sampler = DistributedSampler(dataset, num_replicas=world_size(), rank=rank(),
                                 shuffle=True, seed=cfg.run.seed, drop_last=True)
    per_worker = cfg.train.batch_size // world_size()
    loader = DataLoader(dataset, batch_size=per_worker, sampler=sampler, drop_last=True)
    return ray.train.torch.prepare_data_loader(loader, move_to_device=False), sampler


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)  # DDP keeps the model in .module


class _Lead:
    """Rank 0's side jobs: metrics, sample grids, quality numbers."""

    def __init__(self, cfg: GanConfig, files: DataFiles, heldout: FrameSet,
                 state: GanState | None):
        from dqn.metrics import MetricLogger

        self.cfg, self.run_dir = cfg, run_dir_of(cfg)
        self.logger = MetricLogger(self.run_dir, cfg.to_dict(), group="gan", job_type="gan",
                                   name=cfg.run.name, resume=state is not None,
                                   step_key=STEP_KEY)
        # The best generator so far by the CFD of its selection draws (quality.keep_best).
        self.best: dict | None = state.best if state is not None else None
        self.best_weights: dict | None = state.generator_best if state is not None else None
        self.judge = Judge(load_judge(Path(files.judge)), heldout, cfg.run.seed,
                           cfg.quality.samples, cfg.quality.splits)
        self.names = heldout.names
        self.grid_z, self.grid_labels = fixed_inputs(cfg, len(self.names),
                                                     cfg.train.grid_images)

    def log_losses(self, updates: int, means: np.ndarray, progress: Progress,
                   lr_g: float) -> None:
        row = {"losses/d": means[0], "losses/g": means[1], "D(x)": means[2],
               "D(G(z))": means[3], "charts/lr_g": lr_g}
        if self.cfg.model.latent_codes:
            row["losses/code"] = means[4]
        self.logger.log(updates, row)
        progress.update(updates, row)

    def end_epoch(self, epoch: int, updates: int, g: torch.nn.Module, last: bool,
                  early: bool = False, live: torch.nn.Module | None = None
                  ) -> dict[str, float]:
        """The epoch's sample grid, and its quality numbers every quality.every_epochs
        (quality.early_every_epochs while `early`: before the step sizes fall). `live`:
        the live generator when `g` is the moving average and quality.keep_live."""
        images = generate(g, self.grid_z, self.grid_labels).numpy()
        png = write_png(image_grid(images, columns=_grid_columns(len(images))),
                        self.run_dir / "samples" / f"epoch_{epoch:03d}.png")
        caption = (" / ".join(self.names) + " (rows in that order)"
                   if self.cfg.model.conditional else "unconditional samples")
        self.logger.log_image(updates, "samples", png, caption)
        q = self.cfg.quality
        every = q.early_every_epochs if early and q.early_every_epochs else q.every_epochs
        if epoch % every and not last:
            return {}
        every_report = q.report_every_epochs
        reports = last or every_report is None or bool(every_report) and not epoch % every_report
        if not (reports or q.keep_best):
            return {}
        metrics = score_generator(self.cfg, self.judge, g).metrics() if reports else {}
        if q.keep_best:
            metrics.update(self._select(epoch, g, metrics if reports else None, live, last))
        self.logger.log(updates, {"epoch": epoch, **metrics})
        print(f"[epoch {epoch}] {format_quality(metrics)}", flush=True)
        return metrics

    def _select(self, epoch: int, g: torch.nn.Module, metrics: dict[str, float] | None,
                live: torch.nn.Module | None = None, last: bool = False
                ) -> dict[str, float]:
        """Keep `g` (or `live`, the live weights, scored by its own report draws) when
        its selection draws of samples are the closest yet to the real frames; the best
        epoch's numbers (from the report draws, which took no part in the choice) as
        `best/...`. Where this epoch drew no report draws (`metrics` None), a new kept
        generator's numbers wait for the `last` epoch (quality.report_every_epochs)."""
        reports = metrics is not None
        chosen = selection_cfd(self.cfg, self.judge, g)
        out = {"quality/selection_cfd": chosen,   # the curve between report draws
               "quality/selection_cfd_ratio": chosen / self.judge.baseline}
        candidates = [(chosen, "average", g, metrics)]
        if live is not None:
            out["quality/selection_cfd_live"] = live_cfd = selection_cfd(
                self.cfg, self.judge, live)
            candidates.append((live_cfd, "live", live, None))
        cfd, weights, model, numbers = min(candidates, key=lambda c: c[0])
        if self.best is None or cfd < self.best["selection_cfd"]:
            if numbers is None and reports:
                numbers = score_generator(self.cfg, self.judge, model).metrics()
            self.best = {"epoch": epoch, "selection_cfd": cfd, "weights": weights,
                         "metrics": None if numbers is None else dict(numbers)}
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if last and self.best["metrics"] is None:  # kept between report draws
            kept = copy.deepcopy(g)
            kept.load_state_dict(self.best_weights)
            self.best["metrics"] = score_generator(self.cfg, self.judge, kept).metrics()
        return {**out, **best_metrics(self.best)}

    def close(self) -> None:
        self.logger.close()


def score_generator(cfg: GanConfig, judge: Judge, g: torch.nn.Module) -> Quality:
    """The quality numbers of `g` (see learner.gan.quality) from `generator_draws`."""
    return score_draws(cfg, judge, generator_draws(cfg, judge, g))


def score_draws(cfg: GanConfig, judge: Judge, draws: list[torch.Tensor]) -> Quality:
    """The quality numbers of draws made by `generator_draws`."""
    return judge.score(draws, judge.labels if cfg.model.conditional else None)


def generator_draws(cfg: GanConfig, judge: Judge, g: torch.nn.Module, first: int = 1,
                    count: int | None = None) -> list[torch.Tensor]:
    """`count` (`quality.draws`) sets of samples of `g` from the same noise every time
    (seeds + first, + first + 2, ...: the report draws take the odd offsets, the
    selection draws the even ones), drawn for the games each held-out half holds, in
    its order."""
    return [_drawn(cfg, g, judge.labels, cfg.run.seed + first + 2 * i)
            for i in range(cfg.quality.draws if count is None else count)]


def selection_cfd(cfg: GanConfig, judge: Judge, g: torch.nn.Module) -> float:
    """The mean CFD of `quality.selection_draws` draws from noise of their own (seeds
    + 2, + 4, ...): what the best generator of a run is chosen by."""
    return float(np.mean([judge.selection_cfd(drawn) for drawn in generator_draws(
        cfg, judge, g, first=2, count=cfg.quality.selection_draws)]))


def _drawn(cfg: GanConfig, g: torch.nn.Module, labels: np.ndarray, seed: int
           ) -> torch.Tensor:
    """One sample per entry of `labels` (for those games when conditional; an
    unconditional model picks its own), from noise seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(labels), cfg.model.latent_size, generator=gen)
    return generate(g, z, torch.from_numpy(labels) if cfg.model.conditional else None)


def best_metrics(best: dict) -> dict[str, float]:
    """The kept generator's epoch and its quality numbers, under `best/`."""
    return {"best/epoch": best["epoch"], "best/selection_cfd": best["selection_cfd"],
            "best/live": float(best.get("weights") == "live"),
            **{f"best/{k}": v for k, v in (best.get("metrics") or {}).items()
               if k.startswith("quality/")}}


def _grid_columns(n: int) -> int:
    return max(1, int(np.ceil(np.sqrt(n))))
