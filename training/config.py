"""Training settings (``TrainConfig``) and the named presets.

The defaults are the paper's recipe: Adam (lr 1e-3, betas 0.95/0.9995), the learning rate
decayed by 0.999995 every step, dropout 0.5, Polyak averaging (EMA 0.9995) whose weights are
used for evaluation and sampling, data-dependent initialisation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from pixelcnnpp.autoregressive import PixelCNNConfig
from pixelcnnpp.checks import is_int
from pixelcnnpp.registry import Registry

PRECISIONS = ("fp32", "bf16", "auto")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in the run folder and in checkpoints."""

    # the paper's model, shaped for the default dataset (Fashion-MNIST, 1x28x28)
    model: PixelCNNConfig = field(default_factory=lambda: PixelCNNConfig(image_shape=(1, 28, 28)))
    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    validation_size: int = 5000  # images carved from train (fixed seed) for validation
    subset: int | None = None  # train on the first N training images only
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"image_size": 32}
    # optimisation (the paper's recipe)
    batch_size: int = 16  # per device
    lr: float = 1e-3
    betas: tuple[float, float] = (0.95, 0.9995)
    lr_decay: float = 0.999995  # multiplies the learning rate after every step
    grad_clip: float | None = None  # max global grad norm; None: no clipping (the paper)
    ema_decay: float = 0.9995  # Polyak averaging; its weights evaluate and sample
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n) / (10 + n)) after n updates
    data_init: bool = True  # the paper's data-dependent init of weight-normalized layers
    init_batch_size: int = 256
    max_steps: int | None = None
    max_minutes: float | None = None
    max_bad_steps: int = 20  # consecutive non-finite steps before the run stops
    # numerics and devices
    device: str = "auto"
    precision: str = "fp32"  # "bf16": autocast to bfloat16; "auto": bf16 where it is native
    compile: bool = False  # torch.compile the model
    compile_backend: str = "inductor"  # torch.compile backend ("eager" only traces: a quick check)
    channels_last: bool = False
    # TF32 (a 10-bit mantissa for float32 convolutions and matmuls on Ampere and later GPUs):
    # faster float32 training at slightly lower precision. Evaluation and sampling in float32
    # always run with it off, so reported bits/dim are float32's.
    tf32: bool = False
    seed: int = 0
    # outputs
    log_every: int = 50
    eval_every: int | None = None  # steps between validation evaluations (None: at the end)
    eval_batch_size: int = 64  # CPUs run fastest at small batches; GPU presets use more
    eval_precision: str = "fp32"  # evaluations report exact float32 bits/dim by default
    eval_max_images: int | None = None  # cap for validation evaluations (the final test is whole)
    test_max_images: int | None = None  # cap for the final test evaluation (None: the whole split)
    sample_every: int | None = None  # steps between sample grids (None: at the end)
    num_samples: int = 16
    checkpoint_every: int = 500  # steps
    checkpoint_minutes: float | None = 5.0  # also checkpoint after this much wall time
    keep_checkpoints: int = 3

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = PixelCNNConfig.from_dict(self.model)
        if not isinstance(self.model, PixelCNNConfig):
            raise ValueError(f"model must be a PixelCNNConfig, got {type(self.model).__name__}")
        self.betas = tuple(self.betas)
        if not isinstance(self.dataset_options, dict):
            raise ValueError(
                f"dataset_options must be a dict, got {type(self.dataset_options).__name__}"
            )
        _check("batch_size", self.batch_size, int, minimum=1)
        _check("validation_size", self.validation_size, int, minimum=0)
        _check("subset", self.subset, int, minimum=1, optional=True)
        _check("lr", self.lr, float, minimum=0.0, strict=True)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        _check("lr_decay", self.lr_decay, float, minimum=0.0, strict=True, maximum=1.0)
        _check("grad_clip", self.grad_clip, float, minimum=0.0, strict=True, optional=True)
        _check("ema_decay", self.ema_decay, float, minimum=0.0, maximum=1.0)
        _check("init_batch_size", self.init_batch_size, int, minimum=1)
        _check("max_steps", self.max_steps, int, minimum=0, optional=True)
        _check("max_minutes", self.max_minutes, float, minimum=0.0, optional=True)
        _check("max_bad_steps", self.max_bad_steps, int, minimum=1)
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be one of {DEVICES} (or cuda:N), got {self.device!r}")
        for name in ("precision", "eval_precision"):
            if getattr(self, name) not in PRECISIONS:
                raise ValueError(f"{name} must be one of {PRECISIONS}, got {getattr(self, name)!r}")
        for name in (
            "log_every",
            "checkpoint_every",
            "num_samples",
            "eval_batch_size",
            "keep_checkpoints",
        ):
            _check(name, getattr(self, name), int, minimum=1)
        for name in ("eval_every", "sample_every", "eval_max_images", "test_max_images"):
            _check(name, getattr(self, name), int, minimum=1, optional=True)
        _check(
            "checkpoint_minutes",
            self.checkpoint_minutes,
            float,
            minimum=0.0,
            strict=True,
            optional=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for JSON and checkpoints."""
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; keys ``model.<field>`` change the model config."""
        model_changes = {
            k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("model.")
        }
        changes = {k: v for k, v in changes.items() if not k.startswith("model.")}
        d = self.to_dict()
        d["model"].update(model_changes)
        d.update(changes)
        return TrainConfig.from_dict(d)


def _check(name, value, kind, minimum=None, maximum=None, strict=False, optional=False):
    if value is None and optional:
        return
    if not (is_int(value) or (kind is float and isinstance(value, float))):
        raise ValueError(
            f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}"
        )
    if kind is float and not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite number, got {'NaN' if math.isnan(value) else value}"
        )
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")


PRESETS = Registry("preset")
"""Named starting configurations: functions returning a ``TrainConfig``."""


@PRESETS.register("demo")
def _demo() -> TrainConfig:
    # Sized for 10 minutes on 2 CPU cores with Fashion-MNIST (28x28x1): a narrow, shallow
    # PixelCNN++ sees ~10x more images in that time than the paper's model would.
    return TrainConfig(
        model=PixelCNNConfig(
            image_shape=(1, 28, 28),
            num_filters=48,
            num_resnet=1,
            num_stages=3,
            dropout=0.0,
            likelihood="dmol",
            likelihood_kwargs={"num_mixtures": 5},
        ),
        dataset="fashion-mnist",
        batch_size=32,
        lr=2e-3,
        lr_decay=0.9995,
        precision="auto",  # bf16 where native (AVX512-BF16 CPUs, GPUs): about twice as fast
        max_minutes=10.0,
        eval_max_images=1000,
        eval_batch_size=32,
        log_every=20,
        checkpoint_every=200,
    )


@PRESETS.register("small")
def _small() -> TrainConfig:
    # One GPU for a few hours: the paper's architecture at half width.
    return TrainConfig(
        model=PixelCNNConfig(num_filters=80, num_resnet=5, likelihood_kwargs={"num_mixtures": 10}),
        dataset="cifar10",
        batch_size=32,
        eval_batch_size=256,
        max_steps=200_000,
        eval_every=5000,
        sample_every=10_000,
        checkpoint_every=2000,
    )


@PRESETS.register("paper")
def _paper() -> TrainConfig:
    # The paper's CIFAR-10 model: 160 filters, 5 blocks per stage, 10 mixtures, dropout 0.5,
    # batch 16 per GPU on 8 GPUs (run under torchrun for the paper's global batch).
    return TrainConfig(
        model=PixelCNNConfig(),
        dataset="cifar10",
        batch_size=16,
        eval_batch_size=256,
        max_steps=1_000_000,
        eval_every=10_000,
        sample_every=50_000,
        checkpoint_every=5000,
    )


def preset(name: str) -> TrainConfig:
    """The ``TrainConfig`` of a named preset: ``demo`` (CPU, ~10 minutes), ``small`` (one GPU,
    hours), ``paper`` (the paper's CIFAR-10 settings)."""
    return PRESETS.get(name)()
