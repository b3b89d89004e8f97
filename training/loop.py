"""The training loop: the paper's recipe, a run folder that keeps every result, exact resume.

What the folder holds is ``run_folder.RunFolder``'s; what a checkpoint holds is
``train_state.TrainState``'s; the optimiser and the weight average are ``optim``'s. This module
only runs steps and decides when to log, evaluate, sample and checkpoint.

On a GPU the loop never waits for the device between logging steps: the skip of a non-finite
step, the learning-rate decay, the average and the counters all stay on the device, and are
read back once per ``log_every`` steps. Under torchrun every decision that ends the loop (a
stop request, the time limit, a checkpoint due by wall time, too many bad steps) is agreed by
all processes at those steps, so every process ends the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pixelcnnpp.autoregressive import PixelCNNPP, tf32
from pixelcnnpp.likelihoods import bits_per_dim

from .batches import TrainingBatches
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from .config import TrainConfig
from .data import load_dataset
from .distributed import (
    DistContext,
    barrier,
    init_distributed,
    on_main,
    resolve_precision,
    shutdown,
)
from .evaluation import EvalResult, evaluate
from .images import plot_learning_curves, save_image_grid
from .metrics import MetricsLog
from .optim import EMA, Adam
from .reporting import Reporter
from .rng import rng_state, seed_everything, set_rng_state
from .run_folder import RunFolder, TrainingError, new_run_dir, new_run_id
from .stop import StopRequest
from .train_state import LogWindow, TrainState

__all__ = ["RESUME_OVERRIDES", "TrainResult", "TrainingError", "new_run_dir", "train"]

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
        "tf32",
    }
)
# config.json holds these beside the TrainConfig fields
_FOLDER_KEYS = ("run_id", "num_parameters")


@dataclass
class TrainResult:
    """What a run produced; everything is also in its folder."""

    run_dir: Path
    step: int
    status: str  # "completed" (max_steps), "time_limit" (max_minutes) or "interrupted"
    train_seconds: float
    images_per_sec: float  # this session's training; the run's average if it trained no step
    num_parameters: int
    bad_steps: int
    checkpoint: Path | None
    validation: EvalResult | None = None
    test: EvalResult | None = None
    samples: Path | None = None
    learning_curve: Path | None = None


class _NegativeLogLikelihood(nn.Module):
    """``(x, labels) -> [B]`` nats; the module that DDP wraps."""

    def __init__(self, model: PixelCNNPP, compiled=None):
        super().__init__()
        self.model = model
        self.compiled = compiled  # model.compiled_nll(...) with --compile

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.compiled or self.model.nll
        return loss(x, labels)


# -- where a run starts ---------------------------------------------------------------------------


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
        run_dir: the folder to write; default a new folder under ``out_dir``. A folder that
            holds no checkpoint (a run killed before its first one) is started anew.
        resume: a run folder (or checkpoint) to continue from its last checkpoint, with the
            config stored there; ``overrides`` may change the fields in ``RESUME_OVERRIDES``
            (e.g. a longer ``max_steps``). A folder with a config but no checkpoint restarts
            from step 0. A checkpoint of another run than the folder's is refused. A resumed
            run reproduces, on CPU, exactly the weights and the logged losses of a run that
            was never interrupted.
        reporter: progress display (``RichReporter`` for a terminal); silent by default.
        evaluate_test: evaluate the test split with the EMA weights at the end.

    Under ``torchrun`` the model is wrapped in DistributedDataParallel, each process takes
    its shard of every epoch (``DistributedSampler``), metrics are averaged over processes and
    only rank 0 writes files.
    """
    reporter = reporter or Reporter()
    state, run_id = None, None
    if resume is not None:
        config, run_dir, state, run_id = _resume_point(Path(resume), run_dir, overrides, reporter)
    else:
        config = config or TrainConfig()
        if overrides:
            config = config.replace(**overrides)
    ctx = init_distributed(config.device)
    try:
        if run_dir is None:
            run_dir = _agreed(ctx, lambda: str(new_run_dir(out_dir, config)))
        folder = RunFolder(run_dir, config.keep_checkpoints)
        if state is None and resume is None and folder.state() in ("checkpointed", "finished"):
            raise ValueError(
                f"run folder {folder.path} already holds a run with checkpoints; continue it "
                f"with --resume {folder.path} or choose another --run-dir"
            )
        if run_id is None:
            run_id = folder.run_id if folder.state() == "started" else None
            run_id = _agreed(ctx, lambda: run_id or new_run_id())
        try:
            return _Run(config, folder, run_id, ctx, reporter, state).run(evaluate_test)
        except Exception as error:
            full = folder.disk_full(error, "the run's files")
            if full is not None:
                raise full from error
            raise
    finally:
        shutdown(ctx)


def _resume_point(
    resume: Path, run_dir, overrides: dict[str, Any] | None, reporter: Reporter
) -> tuple[TrainConfig, Path, TrainState | None, str | None]:
    """Config, folder, training state (None: restart at step 0) and run id of a resume."""
    bad = sorted(set(overrides or {}) - RESUME_OVERRIDES)
    if bad:
        raise ValueError(f"a resumed run keeps its config; these fields cannot change: {bad}")
    if resume.is_dir():
        folder = RunFolder(resume.parent if resume.name == "checkpoints" else resume)
        checkpoint = folder.checkpoints.latest()
    else:
        checkpoint = resolve_checkpoint(resume)
        folder = RunFolder(resume.parent.parent) if resume.parent.name == "checkpoints" else None
    if run_dir is not None:
        target = RunFolder(run_dir)
    elif folder is not None:
        target = folder
    else:
        target = None  # the folder the checkpoint names
    saved = folder.read_config() if folder is not None else None

    if checkpoint is None:
        if saved is None:
            raise ValueError(
                f"{folder.path} holds no run to resume (no config.json, no checkpoint); "
                f"start a run there with --run-dir {folder.path}"
            )
        config = TrainConfig.from_dict({k: v for k, v in saved.items() if k not in _FOLDER_KEYS})
        if overrides:
            config = config.replace(**overrides)
        reporter.message(
            f"{folder.path} has no checkpoint (the run stopped before its first): "
            "restarting it from step 0 with its config"
        )
        return config, (target or folder).path, None, saved.get("run_id")

    loaded = load_checkpoint(checkpoint)
    state = TrainState.from_dict(loaded, str(checkpoint))
    if saved is not None:
        _check_belongs(checkpoint, state, folder, saved)
    config = TrainConfig.from_dict(state.train_config)
    if overrides:
        config = config.replace(**overrides)
    if target is None:
        if state.run_dir is None:
            raise CheckpointError(f"{checkpoint} names no run folder; give one with --run-dir")
        target = RunFolder(state.run_dir)
    # a checkpoint continued in a folder of its own starts a run of its own
    same = folder is not None and target.path.resolve() == folder.path.resolve()
    run_id = state.run_id if same or target.run_id == state.run_id else None
    if target.read_config() is not None and not same:
        _check_belongs(checkpoint, state, target, target.read_config())
        run_id = target.run_id
    reporter.message(f"Resuming {target.path} from step {state.step} ({checkpoint.name})")
    return config, target.path, state, run_id


def _check_belongs(checkpoint: Path, state: TrainState, folder: RunFolder, saved: dict) -> None:
    """Refuse a checkpoint of another run than the folder's (by run id, else by config)."""
    theirs, ours = state.run_id, saved.get("run_id")
    if theirs is not None and ours is not None:
        if theirs != ours:
            raise CheckpointError(
                f"{checkpoint} belongs to another run (run id {theirs[:12]}) than the folder "
                f"{folder.path} (run id {ours[:12]}); move it out of {folder.checkpoints.folder} "
                "to resume the folder's own run"
            )
        return
    fixed = set(state.train_config) - RESUME_OVERRIDES
    differ = sorted(k for k in fixed if saved.get(k) != state.train_config.get(k))
    if differ:
        raise CheckpointError(
            f"{checkpoint} was not written by the run in {folder.path}: its config differs in "
            f"{', '.join(differ)}; move it out of {folder.checkpoints.folder} to resume the "
            "folder's own run"
        )


def _agreed(ctx: DistContext, make):
    """A value made on rank 0 and given to every process (a folder name, a run id)."""
    value = [make() if ctx.is_main else None]
    if ctx.distributed:
        dist.broadcast_object_list(value, src=0)
    return value[0]


def _standard_strides(model: nn.Module) -> None:
    """Give every parameter that is contiguous in both memory formats (1x1 kernels, gains)
    torch's standard strides: its gradient comes back with them, and DDP's buckets would
    otherwise copy it every step (warning "Grad strides do not match bucket view strides")."""
    for p in model.parameters():
        if p.is_contiguous() and p.stride() != torch.empty(p.shape, device="meta").stride():
            p.data = torch.empty(p.shape, dtype=p.dtype, device=p.device).copy_(p.data)


# -- one run ------------------------------------------------------------------------------------


class _Counters:
    """The open logging window and the bad-step counts, as tensors on the device."""

    def __init__(self, device: torch.device, window: LogWindow, bad_total: int):
        self.loss_sum = torch.tensor(window.loss_sum, dtype=torch.float64, device=device)
        self.good = torch.tensor(window.good_steps, dtype=torch.int64, device=device)
        self.streak = torch.tensor(window.bad_streak, dtype=torch.int64, device=device)
        self.bad_total = torch.tensor(bad_total, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, bad: torch.Tensor) -> None:
        self.loss_sum += torch.where(bad, 0.0, loss.detach().double())
        self.good += (~bad).to(torch.int64)
        self.streak.mul_(bad.to(torch.int64)).add_(bad.to(torch.int64))
        self.bad_total += bad.to(torch.int64)

    def read(self, ctx: DistContext, *extra: torch.Tensor) -> tuple[float, ...]:
        """(loss sum, good steps, bad streak, bad total, *extra): one transfer from the
        device. The loss sum is the mean over processes of their sums (the counts agree)."""
        loss_sum = self.loss_sum
        if ctx.distributed:
            loss_sum = loss_sum.clone()
            dist.all_reduce(loss_sum, op=dist.ReduceOp.SUM)
            loss_sum = loss_sum / ctx.world_size
        values = [loss_sum, self.good, self.streak, self.bad_total, *extra]
        packed = torch.stack([v.to(torch.float64) for v in values]).tolist()
        return packed[0], int(packed[1]), int(packed[2]), int(packed[3]), *packed[4:]

    def window(self, ctx: DistContext) -> LogWindow:
        """The open window, the same on every process (each resumes with the mean's share)."""
        loss_sum, good, streak, _ = self.read(ctx)[:4]
        if ctx.distributed:
            self.loss_sum.fill_(loss_sum)
        return LogWindow(loss_sum, good, streak)

    def reset_window(self) -> None:
        self.loss_sum.zero_()
        self.good.zero_()


class _Session:
    """Training time and images of this process's session, on top of the run's earlier time."""

    def __init__(self, base_seconds: float):
        self.base, self.start, self.images = base_seconds, time.perf_counter(), 0

    def seconds(self) -> float:
        """The run's training time so far."""
        return self.base + time.perf_counter() - self.start


class _Run:
    def __init__(
        self,
        config: TrainConfig,
        folder: RunFolder,
        run_id: str,
        ctx: DistContext,
        reporter: Reporter,
        state: TrainState | None,
    ):
        self.config, self.folder, self.run_id = config, folder, run_id
        self.ctx, self.reporter = ctx, reporter
        self.precision = resolve_precision(config.precision, ctx.device)
        self.eval_precision = resolve_precision(config.eval_precision, ctx.device)
        cfg, mcfg = config, config.model
        if mcfg.cond_dim is not None:
            raise ValueError(
                "training from a dataset cannot provide conditioning vectors (model.cond_dim); set it to None"
            )
        seed_everything(cfg.seed + ctx.rank)
        self.data_files: dict[str, tuple] = {}  # split -> the DataFile records read
        self.train_ds = self._load("train", download=cfg.download)
        self._check_data()
        self.val_ds = self._load("validation") if cfg.validation_size > 0 else None
        self.dims = math.prod(mcfg.image_shape)

        self.model = PixelCNNPP(mcfg).to(ctx.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        _standard_strides(self.model)
        self.optimizer = Adam(self.model.parameters(), cfg.lr, cfg.betas, cfg.lr_decay, ctx.device)
        self.batches = TrainingBatches(
            self.train_ds, ctx, cfg.batch_size, cfg.seed, mcfg.num_classes is not None
        )
        self.step, self.train_seconds, self.images_seen = 0, 0.0, 0
        self.best = math.inf
        window, bad_total = LogWindow(), 0
        if state is None:
            if cfg.data_init and ctx.device.type != "meta":
                self._data_init()
            self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        else:
            self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
            window, bad_total = state.window, state.bad_steps
            self._restore(state)
        self.counters = _Counters(ctx.device, window, bad_total)
        self.last_checkpoint_step = self.step
        # with --compile the whole training loss, the likelihood included, is one graph
        compiled = self.model.compiled_nll(backend=cfg.compile_backend) if cfg.compile else None
        self.objective = _NegativeLogLikelihood(self.model, compiled)
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        self.metrics = MetricsLog(folder.metrics_path)
        self.num_parameters = self.model.num_parameters
        self.grad_norm = torch.zeros((), device=ctx.device)

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
        if download:
            # one download per node (local rank 0): the other nodes' ranks need their own copy
            if self.ctx.local_rank == 0:
                load_dataset(cfg.dataset, split, download=True, **kwargs)
            barrier(self.ctx)
        data = load_dataset(cfg.dataset, split, **kwargs)
        self.data_files[split] = data.files
        if self.ctx.is_main:
            self.reporter.message(f"Read {data.describe_files()}")
        return data

    def _check_data(self) -> None:
        cfg, mcfg = self.config, self.config.model
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

    def _data_init(self) -> None:
        g = torch.Generator().manual_seed(self.config.seed)
        n = min(self.config.init_batch_size, len(self.train_ds))
        x, labels = self.train_ds.batch(torch.randperm(len(self.train_ds), generator=g)[:n])
        labels = labels if self.config.model.num_classes else None
        self.model.initialize(
            x.to(self.ctx.device), labels.to(self.ctx.device) if labels is not None else None
        )

    def _restore(self, state: TrainState) -> None:
        self.model.load_state_dict(state.model)
        self.ema.load_state_dict(state.ema, state.ema_updates)
        self.optimizer.load_state_dict(state.optimizer)
        self.step = state.step
        self.batches.epoch, self.batches.batch_in_epoch = state.epoch, state.batch_in_epoch
        self.train_seconds, self.images_seen = state.train_seconds, state.images_seen
        self.best = state.best_validation_bits_per_dim
        if len(state.rng) == self.ctx.world_size:
            set_rng_state(state.rng[self.ctx.rank], self.ctx.device)
        else:
            self.reporter.message(
                f"resuming with {self.ctx.world_size} processes from a run with {len(state.rng)}: "
                "random states reseeded"
            )
            seed_everything(self.config.seed + self.ctx.rank + self.step)

    def _state(self) -> TrainState:
        """Every process takes part (random states are gathered)."""
        rng = [rng_state(self.ctx.device)]
        if self.ctx.distributed:
            rng = [None] * self.ctx.world_size
            dist.all_gather_object(rng, rng_state(self.ctx.device))
        return TrainState(
            train_config=self.config.to_dict(),
            model=self.model.state_dict(),
            ema=self.ema.state_dict(),
            ema_updates=int(self.ema.updates),
            optimizer=self.optimizer.state_dict(),
            rng=rng,
            step=self.step,
            epoch=self.batches.epoch,
            batch_in_epoch=self.batches.batch_in_epoch,
            train_seconds=self.train_seconds,
            images_seen=self.images_seen,
            bad_steps=self.counters.read(self.ctx)[3],
            best_validation_bits_per_dim=self.best,
            run_id=self.run_id,
            run_dir=str(self.folder.path),
            world_size=self.ctx.world_size,
            window=self.counters.window(self.ctx),
        )

    def _checkpoint(self) -> Path:
        self._check_streak()
        state = self._state().to_dict()
        on_main(self.ctx, lambda: self.folder.checkpoints.save(state, self.step))
        self.last_checkpoint_step = self.step
        self.last_checkpoint_time = time.perf_counter()
        return self.checkpoint_path

    @property
    def checkpoint_path(self) -> Path | None:
        if self.last_checkpoint_step == 0:
            return None
        return self.folder.checkpoints.folder / f"step-{self.last_checkpoint_step:08d}.pt"

    def _start_files(self) -> None:
        folder = self.folder
        folder.path.mkdir(parents=True, exist_ok=True)
        for path in folder.clean_temporaries():
            self.reporter.message(f"removed {path.name}, left by an interrupted write")
        folder.write_json(
            "config.json",
            {**self.config.to_dict(), "run_id": self.run_id, "num_parameters": self.num_parameters},
        )
        self.metrics.truncate_after(self.step)
        self._write_data_record()

    def _write_data_record(self) -> None:
        """``data.json``: every file each split was read from, its size and checksum."""
        self.folder.write_json(
            "data.json",
            {
                "dataset": self.config.dataset,
                "splits": {
                    split: [
                        {"path": str(f.path), "size": f.size, "checksum": f.checksum} for f in files
                    ]
                    for split, files in self.data_files.items()
                },
            },
        )

    # -- the loop -------------------------------------------------------------------------------

    def run(self, evaluate_test: bool) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        on_main(ctx, self._start_files)
        batches = self.batches
        autocast = (
            torch.autocast(ctx.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        self.reporter.start(cfg.max_steps, self.step)
        status, window_start, last_metrics = "completed", time.perf_counter(), {}
        self.last_checkpoint_time = time.perf_counter()
        session = _Session(self.train_seconds)
        with tf32(cfg.tf32), StopRequest().installed() as stop:
            while True:
                self.train_seconds = session.seconds()
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    break
                if not ctx.distributed or self.step % cfg.log_every == 0:
                    ending = self._poll(stop)
                    if ending in ("interrupted", "time_limit"):
                        status = ending
                        break
                    if ending == "checkpoint" and self.step > self.last_checkpoint_step:
                        self._checkpoint()
                x, labels = next(batches)
                self._train_step(x, labels, autocast)
                self.step += 1
                session.images += len(x) * ctx.world_size
                self.images_seen += len(x) * ctx.world_size
                if self.step % cfg.log_every == 0:
                    last_metrics = self._log(time.perf_counter() - window_start) or last_metrics
                    window_start = time.perf_counter()
                self.reporter.step(self.step, last_metrics)
                self._periodic()
        self.train_seconds = session.seconds()
        self.reporter.finish()
        self._check_streak()
        if self.step > self.last_checkpoint_step:
            self._checkpoint()
        result = self._result(status, session)
        if status != "interrupted":
            try:
                self._finish(result, evaluate_test)
                return result
            except KeyboardInterrupt:
                result.status = "interrupted"
                on_main(ctx, lambda: self._write_results(result, stage="final evaluation"))
                return result
        on_main(ctx, lambda: self._write_results(result))
        return result

    def _periodic(self) -> None:
        """Validation, a sample grid and a checkpoint, on the steps the config asks."""
        cfg, step = self.config, self.step
        if cfg.eval_every and step % cfg.eval_every == 0 and self.val_ds is not None:
            self._validate(cfg.eval_max_images)
        if cfg.sample_every and step % cfg.sample_every == 0:
            path = self.folder.samples_dir / f"step-{step:08d}.png"
            on_main(self.ctx, lambda: self._sample(path))
        if step % cfg.checkpoint_every == 0:
            self._checkpoint()

    def _result(self, status: str, session: _Session) -> TrainResult:
        # images/s of this session; a resumed run that trained no further reports the run's
        if session.images:
            seconds, images = self.train_seconds - session.base, session.images
        else:
            seconds, images = self.train_seconds, self.images_seen
        return TrainResult(
            run_dir=self.folder.path,
            step=self.step,
            status=status,
            train_seconds=self.train_seconds,
            images_per_sec=images / seconds if seconds > 0 else 0.0,
            num_parameters=self.num_parameters,
            bad_steps=self.counters.read(self.ctx)[3],
            checkpoint=self.checkpoint_path,
        )

    def _poll(self, stop: StopRequest) -> str | None:
        """What ends or interrupts the loop now, agreed by every process."""
        cfg = self.config
        out_of_time = cfg.max_minutes is not None and self.train_seconds >= 60 * cfg.max_minutes
        checkpoint_due = (
            cfg.checkpoint_minutes is not None
            and time.perf_counter() - self.last_checkpoint_time >= 60 * cfg.checkpoint_minutes
        )
        flags = [stop.requested, out_of_time, checkpoint_due]
        if self.ctx.distributed:
            t = torch.tensor([float(f) for f in flags], device=self.ctx.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flags = [v > 0 for v in t.tolist()]
        if flags[0]:
            return "interrupted"
        if flags[1]:
            return "time_limit"
        return "checkpoint" if flags[2] else None

    def _train_step(self, x: torch.Tensor, labels: torch.Tensor | None, autocast) -> None:
        cfg, ctx = self.config, self.ctx
        self.optimizer.zero_grad()
        with autocast:
            loss = self.objective(x, labels).float().mean()
        loss.backward()
        self.grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.grad_clip or math.inf
        )
        bad = ~(torch.isfinite(loss) & torch.isfinite(self.grad_norm))
        if ctx.distributed:
            # the loss is per process: a step is skipped everywhere if it is bad anywhere
            flag = bad.to(torch.float32)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = flag > 0
        self.optimizer.step(bad)
        self.ema.update(self.model, bad)
        self.counters.add(loss, bad)

    def _log(self, elapsed: float) -> dict[str, Any] | None:
        """Read the counters (the one wait for the device per logging interval), write a
        record, and stop the run after too many bad steps in a row."""
        cfg, ctx = self.config, self.ctx
        read = self.counters.read(self.ctx, self.optimizer.lr, self.grad_norm.detach())
        loss_sum, good, streak, bad_total, lr, grad_norm = read
        self._check_streak(streak)
        if not good:
            return None
        mean_loss = loss_sum / good
        record = {
            "kind": "train",
            "step": self.step,
            "epoch": self.batches.epoch,
            "loss": mean_loss,
            "bits_per_dim": bits_per_dim(-mean_loss, self.dims),
            "images_per_sec": cfg.log_every * cfg.batch_size * ctx.world_size / elapsed,
            "lr": lr,
            "grad_norm": grad_norm,
            "bad_steps": bad_total,
            "train_seconds": self.train_seconds,
        }
        on_main(ctx, lambda: self.metrics.write(record))
        self.counters.reset_window()
        return record

    def _check_streak(self, streak: int | None = None) -> None:
        """Stop after ``max_bad_steps`` bad steps in a row: checked where the counters are
        read anyway (logging steps, checkpoints, the end), so it costs no extra wait."""
        cfg, folder = self.config, self.folder
        if streak is None:
            streak = self.counters.read(self.ctx)[2]
        if streak < cfg.max_bad_steps:
            return
        latest = self.checkpoint_path
        where = (
            f"the last good checkpoint is {latest}"
            if latest is not None
            else f"no checkpoint was written yet ({folder.path} holds the config and metrics)"
        )
        raise TrainingError(
            f"{streak} steps in a row (to step {self.step}) had a non-finite loss or gradient "
            f"(the limit is max_bad_steps={cfg.max_bad_steps}); {where}. The step size is "
            f"set by --lr ({cfg.lr:g}), --lr-decay ({cfg.lr_decay:g}) and --grad-clip "
            f"({cfg.grad_clip if cfg.grad_clip is not None else 'off'}); the data and "
            "--precision can also cause it"
        )

    # -- the end: evaluation, samples, files ------------------------------------------------------

    def _finish(self, result: TrainResult, evaluate_test: bool) -> None:
        cfg, ctx = self.config, self.ctx
        if self.val_ds is not None:
            result.validation = self._validate(cfg.eval_max_images, save=True)
        if evaluate_test:
            test_ds = self._load("test")
            on_main(ctx, self._write_data_record)
            result.test = evaluate(
                self.ema.module,
                test_ds,
                cfg.eval_batch_size,
                cfg.test_max_images,
                self.eval_precision,
                ctx,
                self.reporter,
            )
            test = result.test

            def save_test():
                self._save_eval(test)
                self.metrics.write({"kind": "test", "step": self.step, **test.to_dict()})

            on_main(ctx, save_test)

        def pictures():
            result.samples = self._sample(self.folder.path / "samples.png")
            result.learning_curve = plot_learning_curves(
                {cfg.model.likelihood: self.metrics.read()},
                self.folder.path / "learning_curve.png",
                title=cfg.dataset,
            )
            self._write_results(result)

        on_main(ctx, pictures)
        barrier(ctx)

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

        def write():
            self.metrics.write({"kind": "validation", "step": self.step, **result.to_dict()})
            if save:
                self._save_eval(result)

        on_main(self.ctx, write)
        if result.bits_per_dim < self.best:  # the same on every process (gathered values)
            self.best = result.bits_per_dim
            state = self._state().to_dict()
            on_main(self.ctx, lambda: self.folder.checkpoints.save_best(state))
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
        self.folder.eval_dir.mkdir(parents=True, exist_ok=True)
        np.save(self.folder.eval_dir / f"{result.split}_bits_per_dim.npy", result.per_image)
        self.folder.write_json(f"eval/{result.split}.json", result.to_dict())

    def _write_results(self, result: TrainResult, stage: str | None = None) -> None:
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
        if result.status == "interrupted":
            summary["interrupted_in"] = stage or "training"
            summary["resume"] = f"pixelcnn train --resume {self.folder.path}"
        self.folder.write_json("results.json", summary)
