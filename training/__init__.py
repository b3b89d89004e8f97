"""Datasets, the training loop, evaluation, checkpoints and distributed training.

>>> from pixelcnnpp.training import TrainConfig, train, preset, load_dataset, evaluate

Where each thing lives, one concept per module:

- ``config``: ``TrainConfig`` and the presets; ``data/``: datasets, one module per on-disk
  format (see docs/datasets.md).
- ``loop``: ``train``, the loop itself; ``batches``: the epoch order of the training
  images; ``optim``: Adam and the weight average; ``rng``: random states; ``stop``: signals.
- ``run_folder``: the layout of a run folder; ``train_state``: what a checkpoint holds;
  ``checkpoint``: reading and keeping checkpoints; ``atomic``: writes that land whole or not
  at all; ``metrics``: the metrics log.
- ``evaluation``: bits/dim on a split; ``compare``: variants trained alike and compared;
  ``images``: grids and plots; ``reporting``: progress output; ``distributed``: devices,
  precision and process groups.
"""

from .checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    load_model,
    model_config_of,
    model_from_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .config import PRESETS, TrainConfig, preset
from .data import (
    DATASETS,
    DataFile,
    DatasetError,
    DatasetSpec,
    PixelDataset,
    dataset_status,
    default_data_dirs,
    get_dataset_spec,
    list_datasets,
    load_dataset,
    register_dataset,
    register_format,
)
from .distributed import DistContext, init_distributed, resolve_device
from .evaluation import EvalResult, confidence_interval, evaluate, pixel_bits
from .images import image_grid, plot_learning_curves, plot_pixel_bits, save_image_grid
from .loop import RESUME_OVERRIDES, TrainResult, train
from .metrics import MetricsLog, read_metrics
from .reporting import Reporter, RichReporter
from .run_folder import (
    DiskFullError,
    RunFolder,
    RunSummary,
    TrainingError,
    list_runs,
    new_run_dir,
    summarize_run,
)
from .train_state import TrainState

__all__ = [
    "DATASETS",
    "PRESETS",
    "RESUME_OVERRIDES",
    "CheckpointError",
    "CheckpointManager",
    "DataFile",
    "DatasetError",
    "DatasetSpec",
    "DiskFullError",
    "DistContext",
    "EvalResult",
    "MetricsLog",
    "PixelDataset",
    "Reporter",
    "RichReporter",
    "RunFolder",
    "RunSummary",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingError",
    "confidence_interval",
    "dataset_status",
    "default_data_dirs",
    "evaluate",
    "get_dataset_spec",
    "image_grid",
    "init_distributed",
    "list_datasets",
    "list_runs",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "model_config_of",
    "model_from_checkpoint",
    "new_run_dir",
    "pixel_bits",
    "plot_learning_curves",
    "plot_pixel_bits",
    "preset",
    "read_metrics",
    "register_dataset",
    "register_format",
    "resolve_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "save_image_grid",
    "summarize_run",
    "train",
]
