"""The options that ``train`` and ``compare`` share, and how they become a ``TrainConfig``.

A ``TrainConfig`` is built in one order: the preset, then the named options, then every
``--set FIELD=VALUE``, then the dataset's image shape (and classes) from
``config_for_dataset``. An option left out keeps the preset's value.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from pixelcnnpp.autoregressive import BLOCKS
from pixelcnnpp.likelihoods import LIKELIHOODS
from pixelcnnpp.training import PRESETS, TrainConfig, preset
from pixelcnnpp.training.compare import config_for_dataset
from pixelcnnpp.training.config import DEVICES, PRECISIONS

from .plugins import load_plugins

DATA, MODEL, OPTIMISATION, SCHEDULE, HARDWARE, EXTEND = (
    "Data",
    "Model",
    "Optimisation",
    "Length and logging",
    "Hardware",
    "Any field, plugins",
)

# -- option types --------------------------------------------------------------------------------

PresetName = Annotated[
    Literal[tuple(PRESETS.names())] | None,
    typer.Option(
        "--preset",
        help="Starting configuration: demo (Fashion-MNIST, ~10 min on a CPU), small (CIFAR-10, one "
        "GPU, hours) or paper (the paper's CIFAR-10 model). Default: demo.",
        show_default=False,
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="Folder (or file, for npz) to look for the data in first.",
        exists=True,
        rich_help_panel=DATA,
    ),
]
Download = Annotated[
    bool,
    typer.Option(
        "--download",
        help="Fetch the dataset (SHA-256 verified) if not found.",
        rich_help_panel=DATA,
    ),
]
Subset = Annotated[
    int | None,
    typer.Option(min=1, help="Train on the first N training images only.", rich_help_panel=DATA),
]
ValidationSize = Annotated[
    int | None,
    typer.Option(
        min=0, help="Images carved from train for validation (0: none).", rich_help_panel=DATA
    ),
]
NumMixtures = Annotated[
    int | None,
    typer.Option(
        min=1, help="Logistic mixture components (dmol likelihood).", rich_help_panel=MODEL
    ),
]
NumFilters = Annotated[
    int | None, typer.Option(min=1, help="Channels of both streams.", rich_help_panel=MODEL)
]
NumResnet = Annotated[
    int | None, typer.Option(min=0, help="Blocks per stage in the up pass.", rich_help_panel=MODEL)
]
NumStages = Annotated[
    int | None,
    typer.Option(min=1, help="Resolutions (each halves the image).", rich_help_panel=MODEL),
]


def finite_float(minimum: float | None = None):
    """A parser for a finite number, at least ``minimum`` when given: NaN and infinities are
    refused by name (a range check alone lets NaN through: every comparison with NaN is
    false)."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a number") from None
        if math.isnan(number):
            raise typer.BadParameter("NaN is not allowed; give a finite number")
        if math.isinf(number):
            raise typer.BadParameter(f"{value} is not allowed; give a finite number")
        if minimum is not None and number < minimum:
            raise typer.BadParameter(f"must be >= {minimum:g}, got {number:g}")
        return number

    return parse


Dropout = Annotated[
    float | None,
    typer.Option(
        parser=finite_float(0.0),
        help="Dropout inside the blocks, in [0, 1).",
        rich_help_panel=MODEL,
    ),
]
Block = Annotated[
    str | None,
    typer.Option(help="A registered block (see `pixelcnn blocks`).", rich_help_panel=MODEL),
]
NumBits = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=8,
        help="Bit depth the data is reduced to and modelled at.",
        rich_help_panel=MODEL,
    ),
]
Conditional = Annotated[
    bool,
    typer.Option(
        "--conditional",
        help="Class-conditional on the dataset's labels (number of classes from the dataset).",
        rich_help_panel=MODEL,
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(min=1, help="Images per step per device.", rich_help_panel=OPTIMISATION),
]
LearningRate = Annotated[
    float | None,
    typer.Option(
        "--lr", parser=finite_float(), help="Adam learning rate.", rich_help_panel=OPTIMISATION
    ),
]
LearningRateDecay = Annotated[
    float | None,
    typer.Option(
        "--lr-decay",
        parser=finite_float(),
        help="Factor applied to the learning rate after every step.",
        rich_help_panel=OPTIMISATION,
    ),
]
GradClip = Annotated[
    float | None,
    typer.Option(
        parser=finite_float(),
        help="Clip the global gradient norm to this.",
        rich_help_panel=OPTIMISATION,
    ),
]
EmaDecay = Annotated[
    float | None,
    typer.Option(
        parser=finite_float(),
        help="Polyak averaging decay; the averaged weights evaluate and sample.",
        rich_help_panel=OPTIMISATION,
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        min=0, help="Seed of weights, data order and samples.", rich_help_panel=OPTIMISATION
    ),
]
MaxSteps = Annotated[
    int | None, typer.Option(min=0, help="Stop after this many steps.", rich_help_panel=SCHEDULE)
]
MaxMinutes = Annotated[
    float | None,
    typer.Option(
        parser=finite_float(0.0),
        help="Stop after this much training time.",
        rich_help_panel=SCHEDULE,
    ),
]
EvalEvery = Annotated[
    int | None,
    typer.Option(min=1, help="Steps between validation evaluations.", rich_help_panel=SCHEDULE),
]
SampleEvery = Annotated[
    int | None, typer.Option(min=1, help="Steps between sample grids.", rich_help_panel=SCHEDULE)
]
CheckpointEvery = Annotated[
    int | None, typer.Option(min=1, help="Steps between checkpoints.", rich_help_panel=SCHEDULE)
]
Device = Annotated[
    Literal[DEVICES] | None,
    typer.Option(help="auto: CUDA when available. Default: auto.", rich_help_panel=HARDWARE),
]
Precision = Annotated[
    Literal[PRECISIONS] | None,
    typer.Option(
        help="bf16: autocast to bfloat16; auto: bf16 where it is native (AVX512-BF16/AMX CPUs, "
        "GPUs with bf16), else fp32. Default: the preset's (demo: auto).",
        rich_help_panel=HARDWARE,
    ),
]
Compile = Annotated[
    bool, typer.Option("--compile", help="torch.compile the model.", rich_help_panel=HARDWARE)
]
ChannelsLast = Annotated[
    bool,
    typer.Option("--channels-last", help="Channels-last memory format.", rich_help_panel=HARDWARE),
]
TF32 = Annotated[
    bool,
    typer.Option(
        "--tf32",
        help="Allow TF32 for float32 convolutions and matmuls in training (Ampere and later "
        "GPUs: faster, 10-bit mantissa). Evaluation and sampling always run without it.",
        rich_help_panel=HARDWARE,
    ),
]
Assignments = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="FIELD=VALUE",
        help="Set any TrainConfig field (model fields as model.FIELD); VALUE is JSON when it "
        "parses, else a string. Repeatable; applied after the named options.",
        rich_help_panel=EXTEND,
    ),
]
Plugins = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        metavar="MODULE",
        help="Import MODULE first (it may register blocks, likelihoods or datasets). Repeatable.",
        rich_help_panel=EXTEND,
    ),
]

# -- the option group train and compare share -----------------------------------------------------

# (parameter, option type, default): the options that change a config the same way in `train`
# and `compare`; MODEL_FIELDS set model.X (see `option_changes`).
SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("preset", PresetName, None),
    ("data_dir", DataDir, None),
    ("download", Download, False),
    ("subset", Subset, None),
    ("validation_size", ValidationSize, None),
    ("num_filters", NumFilters, None),
    ("num_resnet", NumResnet, None),
    ("num_stages", NumStages, None),
    ("dropout", Dropout, None),
    ("num_bits", NumBits, None),
    ("conditional", Conditional, False),
    ("batch_size", BatchSize, None),
    ("lr", LearningRate, None),
    ("lr_decay", LearningRateDecay, None),
    ("grad_clip", GradClip, None),
    ("ema_decay", EmaDecay, None),
    ("seed", Seed, None),
    ("device", Device, None),
    ("precision", Precision, None),
    ("compile", Compile, False),
    ("channels_last", ChannelsLast, False),
    ("tf32", TF32, False),
    ("assignments", Assignments, None),
    ("plugins", Plugins, None),
)
MODEL_FIELDS = ("num_filters", "num_resnet", "num_stages", "dropout", "num_bits")


@dataclass(frozen=True)
class SharedOptions:
    """What the shared options asked for: the preset, the config fields the named options set
    (``TrainConfig.replace`` keys), the ``--set`` assignments and the plugins (already
    imported)."""

    preset: str | None
    changes: dict[str, Any]
    assignments: dict[str, Any]
    plugins: list[str] | None

    def config(self, num_mixtures: int | None = None, **options: Any) -> TrainConfig:
        """The config: the preset, the shared options and then ``options`` (named as
        ``option_changes`` names them), the assignments, shaped for its dataset."""
        changes = {**self.changes, **option_changes(**options)}
        return build_config(self.preset, changes, self.assignments, num_mixtures)

    def resume_overrides(self, num_mixtures: int | None = None, **options: Any) -> dict[str, Any]:
        """The fields a resumed run is asked to change (see ``resume_overrides``)."""
        changes = {**self.changes, **option_changes(**options)}
        return resume_overrides(self.preset, changes, self.assignments, num_mixtures)


def shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the options of ``SHARED_OPTIONS``, after its own, and call it with them
    gathered into one ``shared: SharedOptions`` keyword (plugins imported first, so that the
    names they register are known)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "shared"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in SHARED_OPTIONS
    ]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        given = {
            f"model_{name}" if name in MODEL_FIELDS else name: kwargs.pop(name)
            for name, _, _ in SHARED_OPTIONS
        }
        preset_name, assignments, plugins = (
            given.pop("preset"),
            given.pop("assignments"),
            given.pop("plugins"),
        )
        load_plugins(plugins)
        shared = SharedOptions(
            preset_name, option_changes(**given), parse_assignments(assignments), plugins
        )
        return command(*args, shared=shared, **kwargs)

    run.__signature__ = signature.replace(parameters=[*own, *added])
    run.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
    return run


# -- from options to a config --------------------------------------------------------------------


def parse_assignments(assignments: list[str] | None) -> dict[str, Any]:
    """``["model.num_filters=32", "data_dir=/data"]`` -> ``{"model.num_filters": 32, ...}``."""
    changes: dict[str, Any] = {}
    for assignment in assignments or ():
        name, sep, raw = assignment.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"--set expects FIELD=VALUE (e.g. model.num_filters=32), got {assignment!r}"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes[name.strip()] = value
    return changes


def option_changes(
    *,
    conditional: bool = False,
    download: bool = False,
    compile: bool = False,
    channels_last: bool = False,
    tf32: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """The config fields that the given options set, as ``TrainConfig.replace`` keys.

    ``fields`` are named as the config fields (``model_`` in front for ``model.`` fields);
    ``None`` means the option was not given. The flags only ever switch a field on.
    """
    changes = {
        (f"model.{name.removeprefix('model_')}" if name.startswith("model_") else name): value
        for name, value in fields.items()
        if value is not None
    }
    if "data_dir" in changes:
        changes["data_dir"] = str(changes["data_dir"])
    flags = {
        "download": download,
        "compile": compile,
        "channels_last": channels_last,
        "tf32": tf32,
    }
    changes.update({name: True for name, on in flags.items() if on})
    if conditional:
        changes["model.num_classes"] = 1  # config_for_dataset sets the dataset's count
    return changes


def build_config(
    preset_name: str | None,
    options: dict[str, Any],
    assignments: dict[str, Any],
    num_mixtures: int | None = None,
) -> TrainConfig:
    """The preset, changed by the named ``options``, then by ``assignments`` (``--set``), its
    model shaped for its dataset; unknown likelihood and block names fail here.

    The preset's likelihood arguments are kept only while its likelihood is; ``num_mixtures``
    is added to them; an assigned ``model.likelihood_kwargs`` replaces them.
    """
    config = preset(preset_name or "demo")
    changes = {**options, **assignments}
    if "model.likelihood_kwargs" not in assignments:
        likelihood = changes.get("model.likelihood", config.model.likelihood)
        same = likelihood == config.model.likelihood
        kwargs = dict(config.model.likelihood_kwargs) if same else {}
        if num_mixtures is not None:
            kwargs["num_mixtures"] = num_mixtures
        changes["model.likelihood_kwargs"] = kwargs
    config = config.replace(**changes)
    check_names(config.model.likelihood, config.model.block)
    shaped = config_for_dataset(config, config.dataset)
    asked = assignments.get("model.image_shape")
    if asked is not None and tuple(asked) != tuple(shaped.model.image_shape):
        raise ValueError(
            f"--set model.image_shape={list(asked)} does not match dataset {config.dataset!r}, "
            f"whose images are {list(shaped.model.image_shape)} (C, H, W): the shape comes from "
            "the dataset (resize with the dataset's options, e.g. --set dataset_options=...)"
        )
    _check_stages(shaped)
    return shaped


def _check_stages(config: TrainConfig) -> None:
    """Refuse resolutions the images cannot have: each stage after the first halves them
    (rounding up), so stages past the one at 1x1 would only repeat it."""
    _, h, w = config.model.image_shape
    stages, size = 1, max(h, w)
    while size > 1:
        size, stages = (size + 1) // 2, stages + 1
    if config.model.num_stages > stages:
        raise ValueError(
            f"--num-stages {config.model.num_stages} is more than {h}x{w} images allow: "
            f"stage {stages} already works at 1x1; use at most {stages}"
        )


def resume_overrides(
    preset_name: str | None,
    options: dict[str, Any],
    assignments: dict[str, Any],
    num_mixtures: int | None = None,
) -> dict[str, Any]:
    """The fields a resumed run is asked to change; ``train`` refuses all but the duration
    and logging ones, naming the rest."""
    if preset_name is not None:
        raise ValueError(
            "--preset cannot be combined with --resume: a resumed run keeps its config"
        )
    overrides = {**options, **assignments}
    if num_mixtures is not None:
        overrides.setdefault("model.likelihood_kwargs", {"num_mixtures": num_mixtures})
    return overrides


def check_names(likelihood: str | None = None, block: str | None = None) -> None:
    """Fail early, listing the known names, if a likelihood or block is not registered."""
    for registry, name in ((LIKELIHOODS, likelihood), (BLOCKS, block)):
        if name is not None:
            registry.get(name)
