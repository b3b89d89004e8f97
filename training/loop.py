"""The training loop: the paper's recipe, a run folder that keeps every result, exact resume.

A run folder holds ``config.json``, ``metrics.jsonl`` (one record per logged step and per
evaluation), ``checkpoints/`` (the last N and ``best.pt``), ``samples/`` (periodic grids),
``samples.png`` and ``learning_curve.png`` at the end, ``eval/`` (per-image bits/dim) and
``results.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler

from pixelcnnpp.autoregressive import PixelCNNPP
from pixelcnnpp.likelihoods import bits_per_dim

from .checkpoint import CheckpointManager, load_checkpoint
from .config import TrainConfig
from .data import load_dataset
from .distributed import (
    DistContext,
    all_mean,
    barrier,
    init_distributed,
    resolve_precision,
    shutdown,
)
from .evaluation import EvalResult, evaluate
from .images import plot_learning_curves, save_image_grid
from .metrics import MetricsLog
from .reporting import Reporter

RESUME_OVERRIDES = frozenset(
    {
        "max_steps",
        "max_minutes",
        "device",
        "data_dir",
        "log_every",
        "eval_every",
        "eval_max_images",
        "eval_batch_size",
        "sample_every",
        "checkpoint_every",
        "checkpoint_minutes",
        "keep_checkpoints",
        "test_max_images",
    }
)


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. too many non-finite steps in a row); its folder is intact."""


@dataclass
class TrainResult:
    """What a run produced; everything is also in its folder."""

    run_dir: Path
    step: int
    status: str  # "completed" (max_steps), "time_limit" (max_minutes) or "interrupted"
    train_seconds: float
    images_per_sec: float
    num_parameters: int
    bad_steps: int
    checkpoint: Path | None
    validation: EvalResult | None = None
    test: EvalResult | None = None
    samples: Path | None = None
    learning_curve: Path | None = None


class _NegativeLogLikelihood(nn.Module):
    """``(x, labels) -> [B]`` nats; the module that DDP wraps."""

    def __init__(self, model: PixelCNNPP):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.nll(x, labels)


def new_run_dir(root: str | os.PathLike, config: TrainConfig) -> Path:
    """``root/<date>-<time>-<dataset>-<likelihood>``, made unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{config.dataset}-{config.model.likelihood}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused implementation (one kernel for all parameters, several times faster
    than the default on CPU) where this torch build has it for the parameters' device."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def ema_update(decay: float, warmup: bool = True):
    """Polyak averaging for ``AveragedModel``: ``ema <- d * ema + (1 - d) * params``.

    With ``warmup`` the decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))`` (as
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so that the average is
    useful early in short runs; without it ``d = decay`` from the first update.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


# -- random states -------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _gather_rng(ctx: DistContext) -> list[dict[str, Any]]:
    state = _rng_state()
    if not ctx.distributed:
        return [state]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, state)
    return gathered


# -- signals -------------------------------------------------------------------------------------


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and returns.
    A second signal interrupts at once."""

    def __init__(self):
        self.requested = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _flags(values: list[bool], ctx: DistContext) -> list[bool]:
    """Element-wise OR of boolean flags over all processes."""
    if not ctx.distributed:
        return values
    t = torch.tensor([float(v) for v in values], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


# -- the loop ------------------------------------------------------------------------------------


def train(
    config: TrainConfig | None = None,
    run_dir: str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: str | os.PathLike = "runs",
    reporter: Reporter | None = None,
    evaluate_test: bool = True,
) -> TrainResult:
    """Train a PixelCNN++ as ``config`` says and write everything into a run folder.

    Args:
        config: the run's settings (default ``TrainConfig()``: the paper's recipe and model
            on Fashion-MNIST; see ``preset``). ``config.model.image_shape`` must be the
            dataset's (``compare.config_for_dataset`` sets it).
        run_dir: the folder to write; default a new folder under ``out_dir``.
        resume: a run folder (or checkpoint) to continue from its last checkpoint, with the
            config stored there; ``overrides`` may change the fields in ``RESUME_OVERRIDES``
            (e.g. a longer ``max_steps``). A resumed run reproduces, on CPU, exactly the losses of
            a run that was never interrupted.
        reporter: progress display (``RichReporter`` for a terminal); silent by default.
        evaluate_test: evaluate the test split with the EMA weights at the end.

    Under ``torchrun`` the model is wrapped in DistributedDataParallel, each process takes
    its shard of every epoch (``DistributedSampler``), metrics are averaged over processes and
    only rank 0 writes files.
    """
    reporter = reporter or Reporter()
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        config = TrainConfig.from_dict(state["train_config"])
        bad = sorted(set(overrides or {}) - RESUME_OVERRIDES)
        if bad:
            raise ValueError(f"a resumed run keeps its config; these fields cannot change: {bad}")
        run_dir = Path(state["run_dir"]) if run_dir is None else Path(run_dir)
    config = config or TrainConfig()
    if overrides:
        config = config.replace(**overrides)
    ctx = init_distributed(config.device)
    try:
        if state is None:
            run_dir = Path(run_dir) if run_dir is not None else new_run_dir(out_dir, config)
        return _Run(config, Path(run_dir), ctx, reporter, state).run(evaluate_test)
    finally:
        shutdown(ctx)


class _Run:
    def __init__(
        self, config: TrainConfig, run_dir: Path, ctx: DistContext, reporter: Reporter, state
    ):
        self.config, self.run_dir, self.ctx, self.reporter = config, run_dir, ctx, reporter
        self.precision = resolve_precision(config.precision, ctx.device)
        self.eval_precision = resolve_precision(config.eval_precision, ctx.device)
        cfg, mcfg = config, config.model
        if mcfg.cond_dim is not None:
            raise ValueError(
                "training from a dataset cannot provide conditioning vectors (model.cond_dim); set it to None"
            )
        seed_everything(cfg.seed + ctx.rank)
        self.train_ds = self._load("train", download=cfg.download)
        if self.train_ds.image_shape != tuple(mcfg.image_shape):
            raise ValueError(
                f"the model's image_shape {tuple(mcfg.image_shape)} does not match dataset {cfg.dataset!r} "
                f"images {self.train_ds.image_shape}; set model.image_shape"
            )
        if mcfg.num_classes is not None:
            if self.train_ds.labels is None:
                raise ValueError(
                    f"dataset {cfg.dataset!r} has no labels for a class-conditional model (num_classes)"
                )
            top = int(self.train_ds.labels.max()) + 1
            if top > mcfg.num_classes:
                raise ValueError(
                    f"dataset {cfg.dataset!r} has labels up to {top - 1}; model.num_classes={mcfg.num_classes}"
                )
        self.val_ds = self._load("validation") if cfg.validation_size > 0 else None
        self.dims = math.prod(mcfg.image_shape)

        self.model = PixelCNNPP(mcfg).to(ctx.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=cfg.lr_decay)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.train_seconds, self.bad_streak, self.bad_total = 0.0, 0, 0
        self.best = math.inf
        if state is None:
            if cfg.data_init and ctx.device.type != "meta":
                self._data_init()
            self.ema = self._make_ema()
        else:
            self.ema = self._make_ema()
            self._restore(state)
        self.objective = _NegativeLogLikelihood(self.model)
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        if cfg.compile:
            # The network compiles to one graph; the likelihood keeps its own fused kernels.
            self.model.features = torch.compile(self.model.features, backend=cfg.compile_backend)
        self.checkpoints = CheckpointManager(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")
        self.num_parameters = self.model.num_parameters

    # -- setup ----------------------------------------------------------------------------------

    def _load(self, split: str, download: bool = False):
        cfg = self.config
        kwargs = dict(
            data_dir=cfg.data_dir,
            num_bits=cfg.model.num_bits,
            validation_size=cfg.validation_size,
            seed=cfg.seed,
            **cfg.dataset_options,
        )
        if split == "train":
            kwargs["subset"] = cfg.subset
        if download and self.ctx.is_main:
            load_dataset(cfg.dataset, split, download=True, **kwargs)
        barrier(self.ctx)
        return load_dataset(cfg.dataset, split, **kwargs)

    def _data_init(self) -> None:
        g = torch.Generator().manual_seed(self.config.seed)
        n = min(self.config.init_batch_size, len(self.train_ds))
        x, labels = self.train_ds.batch(torch.randperm(len(self.train_ds), generator=g)[:n])
        labels = labels if self.config.model.num_classes else None
        self.model.initialize(
            x.to(self.ctx.device), labels.to(self.ctx.device) if labels is not None else None
        )

    def _make_ema(self) -> AveragedModel:
        ema = AveragedModel(
            self.model,
            multi_avg_fn=ema_update(self.config.ema_decay, self.config.ema_warmup),
            use_buffers=True,
        )
        return ema.eval()

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.ema.n_averaged.fill_(int(state["ema_updates"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = (
            state["step"],
            state["epoch"],
            state["batch_in_epoch"],
        )
        self.train_seconds, self.bad_total = state["train_seconds"], state["bad_steps"]
        self.best = state["best_validation_bits_per_dim"]
        rng = state["rng"]
        if len(rng) == self.ctx.world_size:
            _set_rng_state(rng[self.ctx.rank])
        else:
            self.reporter.message(
                f"resuming with {self.ctx.world_size} processes from a run with {len(rng)}: random states reseeded"
            )
            seed_everything(self.config.seed + self.ctx.rank + self.step)

    def _state(self) -> dict[str, Any]:
        rng = _gather_rng(self.ctx)
        return {
            "train_config": self.config.to_dict(),
            "model_config": self.config.model.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "ema_updates": int(self.ema.n_averaged.item()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "train_seconds": self.train_seconds,
            "bad_steps": self.bad_total,
            "best_validation_bits_per_dim": self.best,
            "rng": rng,
            "run_dir": str(self.run_dir),
            "world_size": self.ctx.world_size,
        }

    def _checkpoint(self) -> Path | None:
        state = self._state()  # every process takes part (random states are gathered)
        if not self.ctx.is_main:
            return None
        return self.checkpoints.save(state, self.step)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, evaluate_test: bool) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_json(
                "config.json", {**cfg.to_dict(), "num_parameters": self.num_parameters}
            )
            self.metrics.truncate_after(self.step)
        sampler = DistributedSampler(
            range(len(self.train_ds)),
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=True,
        )
        per_epoch = len(sampler) // cfg.batch_size
        if per_epoch == 0:
            raise ValueError(
                f"batch_size {cfg.batch_size} x {ctx.world_size} processes exceeds the {len(self.train_ds)} training images"
            )
        autocast = (
            torch.autocast(ctx.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else nullcontext()
        )
        total = cfg.max_steps
        self.reporter.start(total, self.step)
        status, order = "completed", None
        window_loss, window_steps, window_start = (
            torch.zeros((), device=ctx.device),
            0,
            time.perf_counter(),
        )
        last_checkpoint_time, checkpoint = time.perf_counter(), None
        last_metrics: dict[str, Any] = {}
        session_start, session_base = time.perf_counter(), self.train_seconds
        images_seen = 0
        with _StopRequest().installed() as stop:
            while True:
                self.train_seconds = session_base + time.perf_counter() - session_start
                if total is not None and self.step >= total:
                    break
                out_of_time = (
                    cfg.max_minutes is not None and self.train_seconds >= 60 * cfg.max_minutes
                )
                checkpoint_due = (
                    cfg.checkpoint_minutes is not None
                    and time.perf_counter() - last_checkpoint_time >= 60 * cfg.checkpoint_minutes
                )
                stop_now, out_of_time, checkpoint_due = _flags(
                    [stop.requested, out_of_time, checkpoint_due], ctx
                )
                if stop_now or out_of_time:
                    status = "interrupted" if stop_now else "time_limit"
                    break
                if checkpoint_due and self.step > 0:
                    checkpoint = self._checkpoint() or checkpoint
                    last_checkpoint_time = time.perf_counter()
                if order is None or self.batch_in_epoch >= per_epoch:
                    if order is not None:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    sampler.set_epoch(self.epoch)
                    order = torch.tensor(list(iter(sampler)))
                first = self.batch_in_epoch * cfg.batch_size
                x, labels = self.train_ds.batch(order[first : first + cfg.batch_size])
                self.batch_in_epoch += 1
                x = x.to(ctx.device, non_blocking=True)
                labels = (
                    labels.to(ctx.device) if labels is not None and cfg.model.num_classes else None
                )

                self.optimizer.zero_grad(set_to_none=True)
                with autocast:
                    loss = self.objective(x, labels).float().mean()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), cfg.grad_clip or math.inf
                )
                bad = not (torch.isfinite(loss) and torch.isfinite(grad_norm))
                (bad,) = _flags([bad], ctx)
                self.step += 1
                images_seen += len(x) * ctx.world_size
                if bad:
                    self.bad_streak += 1
                    self.bad_total += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.bad_streak >= cfg.max_bad_steps:
                        raise TrainingError(
                            f"{self.bad_streak} steps in a row had a non-finite loss or gradient (step {self.step}); "
                            f"the last good checkpoint is in {self.checkpoints.folder}. Lower the learning rate "
                            "(--lr) or set a gradient clip (--grad-clip)."
                        )
                else:
                    self.bad_streak = 0
                    self.optimizer.step()
                    self.scheduler.step()
                    self.ema.update_parameters(self.model)
                    window_loss += loss.detach()
                    window_steps += 1

                if self.step % cfg.log_every == 0 and window_steps:
                    elapsed = time.perf_counter() - window_start
                    mean_loss = all_mean(window_loss / window_steps, ctx).item()
                    last_metrics = {
                        "kind": "train",
                        "step": self.step,
                        "epoch": self.epoch,
                        "loss": mean_loss,
                        "bits_per_dim": bits_per_dim(-mean_loss, self.dims),
                        "images_per_sec": window_steps * cfg.batch_size * ctx.world_size / elapsed,
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": grad_norm.item(),
                        "bad_steps": self.bad_total,
                        "train_seconds": self.train_seconds,
                    }
                    if ctx.is_main:
                        self.metrics.write(last_metrics)
                    window_loss.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                self.reporter.step(self.step, last_metrics)

                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.val_ds is not None:
                    self._validate(cfg.eval_max_images)
                if cfg.sample_every and self.step % cfg.sample_every == 0 and ctx.is_main:
                    self._sample(self.run_dir / "samples" / f"step-{self.step:08d}.png")
                if self.step % cfg.checkpoint_every == 0:
                    checkpoint = self._checkpoint() or checkpoint
                    last_checkpoint_time = time.perf_counter()

        self.train_seconds = session_base + time.perf_counter() - session_start
        session_seconds = self.train_seconds - session_base
        self.reporter.finish()
        if self.step > 0 and (
            checkpoint is None or not str(checkpoint).endswith(f"{self.step:08d}.pt")
        ):
            checkpoint = self._checkpoint() or checkpoint
        result = TrainResult(
            run_dir=self.run_dir,
            step=self.step,
            status=status,
            train_seconds=self.train_seconds,
            images_per_sec=images_seen / session_seconds if session_seconds > 0 else 0.0,
            num_parameters=self.num_parameters,
            bad_steps=self.bad_total,
            checkpoint=checkpoint,
        )
        if status == "interrupted":
            self._write_results(result)
            return result
        if self.val_ds is not None:
            result.validation = self._validate(cfg.eval_max_images, save=True)
        if evaluate_test:
            test_ds = self._load("test")
            result.test = evaluate(
                self.ema.module,
                test_ds,
                cfg.eval_batch_size,
                cfg.test_max_images,
                self.eval_precision,
                ctx,
                self.reporter,
            )
            if ctx.is_main:
                self._save_eval(result.test)
                self.metrics.write({"kind": "test", "step": self.step, **result.test.to_dict()})
        if ctx.is_main:
            result.samples = self._sample(self.run_dir / "samples.png")
            result.learning_curve = plot_learning_curves(
                {cfg.model.likelihood: self.metrics.read()},
                self.run_dir / "learning_curve.png",
                title=cfg.dataset,
            )
            self._write_results(result)
        barrier(ctx)
        return result

    # -- evaluation, samples, files -------------------------------------------------------------

    def _validate(self, max_images: int | None, save: bool = False) -> EvalResult:
        cfg = self.config
        result = evaluate(
            self.ema.module,
            self.val_ds,
            cfg.eval_batch_size,
            max_images,
            self.eval_precision,
            self.ctx,
            self.reporter,
        )
        if self.ctx.is_main:
            self.metrics.write({"kind": "validation", "step": self.step, **result.to_dict()})
            if save:
                self._save_eval(result)
        improved = result.bits_per_dim < self.best
        if improved:
            self.best = result.bits_per_dim
        state = self._state() if improved else None
        if improved and self.ctx.is_main:
            self.checkpoints.save_best(state)
        return result

    def _sample(self, path: Path) -> Path:
        cfg = self.config
        n = cfg.num_samples
        labels = (
            torch.arange(n, device=self.ctx.device) % cfg.model.num_classes
            if cfg.model.num_classes
            else None
        )
        g = torch.Generator(device=self.ctx.device).manual_seed(cfg.seed)
        with self.reporter.task("sample", total=cfg.model.image_shape[1]) as advance:
            images = self.ema.module.sample(
                n, labels=labels, generator=g, progress=lambda done, total: advance(1)
            )
        return save_image_grid(images, path, cfg.model.num_bits)

    def _save_eval(self, result: EvalResult) -> None:
        folder = self.run_dir / "eval"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{result.split}_bits_per_dim.npy", result.per_image)
        self._write_json(f"eval/{result.split}.json", result.to_dict())

    def _write_results(self, result: TrainResult) -> None:
        if not self.ctx.is_main:
            return
        summary = {
            "status": result.status,
            "step": result.step,
            "train_seconds": result.train_seconds,
            "images_per_sec": result.images_per_sec,
            "num_parameters": result.num_parameters,
            "bad_steps": result.bad_steps,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "validation": result.validation.to_dict() if result.validation else None,
            "test": result.test.to_dict() if result.test else None,
        }
        self._write_json("results.json", summary)

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
