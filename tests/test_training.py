"""The training loop: run folder, exact resume (kill -9 included), signals, non-finite steps,
checkpoints, evaluation, and 2-process DDP against 1 process."""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelcnnpp.autoregressive import PixelCNNConfig
from pixelcnnpp.training import (
    CheckpointError,
    TrainConfig,
    TrainingError,
    evaluate,
    load_checkpoint,
    load_dataset,
    load_model,
    read_metrics,
    save_checkpoint,
    train,
)
from pixelcnnpp.training import loop as loop_module

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """8x8 grey images with labels (400 train, 100 test): Fashion-MNIST pooled 3x3 if installed,
    else noisy gradients; an array-dataset folder with train.npz and test.npz."""
    folder = tmp_path_factory.mktemp("data")
    if FASHION.exists():
        with gzip.open(FASHION) as f:
            f.read(16)
            x = np.frombuffer(f.read(28 * 28 * 500), np.uint8).reshape(-1, 28, 28)
        images = x[:, 2:26, 2:26].reshape(-1, 8, 3, 8, 3).mean((2, 4)).round().astype(np.uint8)
    else:
        g = np.random.default_rng(0)
        base = np.linspace(0, 255, 8)[None, :, None] * np.ones((500, 8, 8))
        images = (base + g.normal(0, 20, base.shape)).clip(0, 255).astype(np.uint8)
    labels = np.arange(len(images)) % 10
    np.savez(folder / "train.npz", images=images[:400], labels=labels[:400])
    np.savez(folder / "test.npz", images=images[400:], labels=labels[400:])
    return folder


def tiny_config(data: Path, **changes) -> TrainConfig:
    config = TrainConfig(
        model=PixelCNNConfig(
            image_shape=(1, 8, 8),
            num_filters=8,
            num_resnet=1,
            num_stages=2,
            dropout=0.5,
            likelihood_kwargs={"num_mixtures": 2},
        ),
        dataset="npz",
        data_dir=str(data),
        validation_size=40,
        batch_size=8,
        max_steps=12,
        log_every=1,
        checkpoint_every=4,
        checkpoint_minutes=None,
        num_samples=2,
        init_batch_size=32,
        eval_batch_size=64,
    )
    return config.replace(**changes)


def train_losses(run_dir: Path) -> dict[int, float]:
    return {
        r["step"]: r["loss"]
        for r in read_metrics(run_dir / "metrics.jsonl")
        if r["kind"] == "train"
    }


def run_in_subprocess(config: TrainConfig, run_dir: Path, extra: str = "") -> subprocess.Popen:
    """``train(config)`` in a fresh interpreter (so it can be killed or signalled)."""
    config_path = run_dir.parent / f"{run_dir.name}-config.json"
    config_path.write_text(json.dumps(config.to_dict()))
    code = textwrap.dedent(
        f"""
        import json
        from pixelcnnpp.training import TrainConfig, train
        config = TrainConfig.from_dict(json.load(open({str(config_path)!r})))
        result = train(config, run_dir={str(run_dir)!r}, evaluate_test=False)
        print("STATUS", result.status, result.step, flush=True)
        {extra}
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_step(
    run_dir: Path, step: int, process: subprocess.Popen, timeout: float = 120.0
) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run_dir / "metrics.jsonl").exists() and max(train_losses(run_dir), default=0) >= step:
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


# -- the run folder --------------------------------------------------------------------------------


def test_run_folder_holds_every_result(tiny_npz, tmp_path):
    config = tiny_config(tiny_npz, max_steps=8, eval_every=4, sample_every=4)
    result = train(config, tmp_path / "run")
    run = result.run_dir
    assert result.status == "completed" and result.step == 8
    assert json.loads((run / "config.json").read_text())["model"]["num_filters"] == 8
    records = read_metrics(run / "metrics.jsonl")
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 9))
    for r in train_records:
        assert {"loss", "bits_per_dim", "images_per_sec", "lr", "grad_norm"} <= set(r)
        assert math.isfinite(r["loss"]) and r["images_per_sec"] > 0
        assert r["bits_per_dim"] == pytest.approx(r["loss"] / (64 * math.log(2)))
    # the learning rate decays by lr_decay every step
    assert train_records[1]["lr"] == pytest.approx(train_records[0]["lr"] * config.lr_decay)
    validations = [r for r in records if r["kind"] == "validation"]
    assert [r["step"] for r in validations] == [4, 8, 8]
    assert {p.name for p in (run / "samples").iterdir()} == {
        "step-00000004.png",
        "step-00000008.png",
    }
    for png in (run / "samples.png", run / "learning_curve.png"):
        assert Image.open(png).size[0] > 10
    test = json.loads((run / "eval" / "test.json").read_text())
    per_image = np.load(run / "eval" / "test_bits_per_dim.npy")
    assert test["num_images"] == len(per_image) == 100 and test["bits_per_dim"] == pytest.approx(
        per_image.mean()
    )
    assert test["ci_low"] < test["bits_per_dim"] < test["ci_high"]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed" and results["test"]["bits_per_dim"] == pytest.approx(
        test["bits_per_dim"]
    )
    assert (run / "checkpoints" / "best.pt").exists()
    data = json.loads((run / "data.json").read_text())
    assert data["dataset"] == "npz" and sorted(data["splits"]) == ["test", "train", "validation"]
    for split, name in [("train", "train.npz"), ("validation", "train.npz"), ("test", "test.npz")]:
        (record,) = data["splits"][split]
        assert record["path"] == str(tiny_npz / name) and record["checksum"] == "unknown"
        assert record["size"] == (tiny_npz / name).stat().st_size
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*.pt")) == [
        "step-00000004.pt",
        "step-00000008.pt",
    ]


def test_keeps_only_the_last_checkpoints(tiny_npz, tmp_path):
    train(
        tiny_config(
            tiny_npz, max_steps=10, checkpoint_every=2, keep_checkpoints=2, validation_size=0
        ),
        tmp_path / "r",
        evaluate_test=False,
    )
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("step-*.pt"))
    assert names == ["step-00000008.pt", "step-00000010.pt"]


def test_training_lowers_the_loss(tiny_npz, tmp_path):
    config = tiny_config(tiny_npz, max_steps=60, log_every=10, lr=3e-3, validation_size=0).replace(
        **{"model.dropout": 0.0}
    )
    train(config, tmp_path / "r", evaluate_test=False)
    losses = list(train_losses(tmp_path / "r").values())
    assert losses[-1] < losses[0] - 0.5 * 64  # at least half a bit per dim better


# -- exact resume --------------------------------------------------------------------------------------


def test_resume_after_kill_reproduces_the_uninterrupted_losses(tiny_npz, tmp_path):
    config = tiny_config(tiny_npz, max_steps=16, validation_size=0)
    reference = train_losses(train(config, tmp_path / "reference", evaluate_test=False).run_dir)

    run = tmp_path / "killed"
    process = run_in_subprocess(config.replace(max_steps=10_000), run)
    wait_for_step(run, 10, process)
    process.send_signal(signal.SIGKILL)  # kill -9: no chance to write anything
    process.wait()
    last = load_checkpoint(run)["step"]
    assert 4 <= last < 10_000 and last % 4 == 0

    result = train(resume=run, overrides={"max_steps": 16}, evaluate_test=False)
    assert result.step == 16
    resumed = train_losses(run)
    assert sorted(resumed) == list(range(1, 17))  # the killed run's extra steps were dropped
    assert resumed == reference  # bit for bit: data order, dropout masks, Adam, EMA, schedule


def test_resume_from_a_checkpoint_at_the_end_of_an_epoch(tiny_npz, tmp_path):
    # 32 images of 8: the checkpoint at step 4 closes epoch 0, the resumed run opens epoch 1
    config = tiny_config(tiny_npz, subset=32, validation_size=0, max_steps=8)
    reference = train_losses(train(config, tmp_path / "reference", evaluate_test=False).run_dir)
    train(config.replace(max_steps=4), tmp_path / "run", evaluate_test=False)
    assert load_checkpoint(tmp_path / "run")["batch_in_epoch"] == 4
    train(resume=tmp_path / "run", overrides={"max_steps": 8}, evaluate_test=False)
    assert train_losses(tmp_path / "run") == reference


def test_resume_keeps_the_config_and_refuses_other_changes(tiny_npz, tmp_path):
    run = train(
        tiny_config(tiny_npz, max_steps=4, validation_size=0), tmp_path / "r", evaluate_test=False
    ).run_dir
    with pytest.raises(ValueError, match="cannot change"):
        train(resume=run, overrides={"lr": 1.0})
    result = train(resume=run, overrides={"max_steps": 6}, evaluate_test=False)
    assert result.step == 6
    assert load_checkpoint(run)["train_config"]["lr"] == tiny_config(tiny_npz).lr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_step_and_checkpoints(tiny_npz, tmp_path, signum):
    run = tmp_path / "run"
    process = run_in_subprocess(tiny_config(tiny_npz, max_steps=10_000, validation_size=0), run)
    wait_for_step(run, 3, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    status, step = out.split()[1], int(out.split()[2])
    assert status == "interrupted"
    assert load_checkpoint(run)["step"] == step  # a checkpoint of the very last step
    assert json.loads((run / "results.json").read_text())["status"] == "interrupted"


# -- non-finite steps ----------------------------------------------------------------------------------


def nan_on_steps(monkeypatch, steps: set[int]):
    calls = {"n": 0}
    forward = loop_module._NegativeLogLikelihood.forward

    def patched(self, x, labels=None):
        calls["n"] += 1
        out = forward(self, x, labels)
        return out * float("nan") if calls["n"] in steps else out

    monkeypatch.setattr(loop_module._NegativeLogLikelihood, "forward", patched)


def test_non_finite_steps_are_skipped_and_counted(tiny_npz, tmp_path, monkeypatch):
    nan_on_steps(monkeypatch, {3, 4})
    result = train(
        tiny_config(tiny_npz, max_steps=8, validation_size=0), tmp_path / "r", evaluate_test=False
    )
    assert result.bad_steps == 2 and result.step == 8
    state = load_checkpoint(tmp_path / "r")
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    logged = read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert logged[-1]["bad_steps"] == 2 and all(math.isfinite(r["loss"]) for r in logged)


def test_too_many_non_finite_steps_stop_with_the_last_checkpoint_intact(
    tiny_npz, tmp_path, monkeypatch
):
    nan_on_steps(monkeypatch, set(range(6, 100)))
    config = tiny_config(tiny_npz, max_steps=50, max_bad_steps=3, validation_size=0)
    with pytest.raises(TrainingError, match="3 steps in a row"):
        train(config, tmp_path / "r", evaluate_test=False)
    state = load_checkpoint(tmp_path / "r")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


# -- checkpoints ----------------------------------------------------------------------------------------


def test_checkpoint_rebuilds_the_model_with_ema_weights(tiny_npz, tmp_path):
    result = train(
        tiny_config(tiny_npz, max_steps=6, validation_size=0), tmp_path / "r", evaluate_test=False
    )
    state = load_checkpoint(result.checkpoint)
    model, raw = load_model(result.checkpoint), load_model(result.checkpoint, use_ema=False)
    assert not model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["ema"][name])
    assert any(
        not torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), raw.state_dict().values(), strict=True)
    )
    x = load_dataset("npz", "test", data_dir=tiny_npz).images[:4]
    assert torch.isfinite(model(x).log_prob(x)).all()


def test_bad_checkpoint_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        load_checkpoint(garbage)
    good = save_checkpoint({"step": 1, "weights": torch.ones(1000)}, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a pixelcnnpp checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)


class _Payload:
    """Unpickling it would create the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "pixelcnnpp-checkpoint", "payload": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is live: unrestricted loading runs it
    assert marker.exists()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "c.pt")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


# -- evaluation -------------------------------------------------------------------------------------------


def test_evaluate_matches_a_direct_computation(tiny_npz, tmp_path):
    result = train(
        tiny_config(tiny_npz, max_steps=2, validation_size=0), tmp_path / "r", evaluate_test=False
    )
    model = load_model(result.checkpoint)
    ds = load_dataset("npz", "test", data_dir=tiny_npz)
    ev = evaluate(model, ds, batch_size=37)
    with torch.no_grad():
        direct = -model(ds.images).log_prob(ds.images) / (64 * math.log(2))
    np.testing.assert_allclose(ev.per_image, direct.double().numpy(), rtol=1e-5)
    assert ev.ci_low < ev.bits_per_dim < ev.ci_high and ev.num_images == len(ds)


# -- options -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"precision": "bf16"},
        {"channels_last": True},
        {"compile": True, "compile_backend": "eager"},
        {"model.num_classes": 10},
        {"model.likelihood": "softmax", "model.likelihood_kwargs": {}, "model.num_bits": 3},
        {"grad_clip": 1.0, "data_init": False, "ema_warmup": False},
    ],
    ids=lambda c: ",".join(c),
)
def test_training_options_run(tiny_npz, tmp_path, changes):
    result = train(
        tiny_config(tiny_npz, max_steps=3, validation_size=0, **changes),
        tmp_path / "r",
        evaluate_test=False,
    )
    assert result.status == "completed"
    assert all(math.isfinite(v) for v in train_losses(result.run_dir).values())


def test_time_limit_stops_the_run(tiny_npz, tmp_path):
    result = train(
        tiny_config(tiny_npz, max_steps=None, max_minutes=0.02, validation_size=0),
        tmp_path / "r",
        evaluate_test=False,
    )
    assert result.status == "time_limit" and result.step > 0 and result.train_seconds >= 1.2


def test_mismatched_shapes_and_conditioning_are_rejected(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="image_shape"):
        train(tiny_config(tiny_npz).replace(**{"model.image_shape": (1, 28, 28)}), tmp_path / "a")
    with pytest.raises(ValueError, match="cond_dim"):
        train(tiny_config(tiny_npz).replace(**{"model.cond_dim": 3}), tmp_path / "b")
    with pytest.raises(ValueError, match="num_classes=3"):
        train(tiny_config(tiny_npz).replace(**{"model.num_classes": 3}), tmp_path / "c")


def test_config_round_trip_and_validation():
    config = TrainConfig()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for field, value in [
        ("lr", 0),
        ("batch_size", 0),
        ("precision", "fp8"),
        ("device", "tpu"),
        ("betas", (1.0, 0.5)),
    ]:
        with pytest.raises(ValueError, match=field):
            config.replace(**{field: value})
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"learning_rate": 1})
    assert (config.lr, config.betas, config.lr_decay, config.ema_decay) == (
        1e-3,
        (0.95, 0.9995),
        0.999995,
        0.9995,
    )
    assert config.model.dropout == 0.5 and config.data_init


# -- distributed ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tiny_npz, tmp_path):
    # dropout off: its masks are per process, everything else must agree to float tolerance
    base = tiny_config(tiny_npz, max_steps=6, validation_size=0).replace(**{"model.dropout": 0.0})
    single = train(base.replace(batch_size=16), tmp_path / "one", evaluate_test=False)
    config_path = tmp_path / "two.json"
    config_path.write_text(json.dumps(base.replace(batch_size=8).to_dict()))
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json
            from pixelcnnpp.training import TrainConfig, train
            config = TrainConfig.from_dict(json.load(open({str(config_path)!r})))
            train(config, run_dir={str(tmp_path / "two")!r}, evaluate_test=False)
            """
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(script),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = train_losses(single.run_dir), train_losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(1, 7))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert load_checkpoint(tmp_path / "two")["world_size"] == 2


def test_compare_refuses_to_run_under_torchrun(monkeypatch, tmp_path):
    from pixelcnnpp.training.compare import compare

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one process"):
        compare(["dmol", "softmax"], ["fashion-mnist"], TrainConfig(), tmp_path)


def test_variant_grid_crosses_in_order_and_names_what_varies(registries):
    from pixelcnnpp.autoregressive import GatedResnet, register_block
    from pixelcnnpp.training.compare import variant_grid

    register_block("twin", GatedResnet)
    base = TrainConfig()  # dmol with the preset's num_mixtures
    grid = variant_grid(base, ["dmol", "softmax"], ["gated_resnet", "twin"], [3, 7])
    assert [v.name for v in grid] == [
        "dmol-gated_resnet-k3", "dmol-gated_resnet-k7", "dmol-twin-k3", "dmol-twin-k7",
        "softmax-gated_resnet", "softmax-twin",
    ]  # fmt: skip
    assert grid[1].changes == {
        "model.likelihood": "dmol",
        "model.block": "gated_resnet",
        "model.likelihood_kwargs": {**base.model.likelihood_kwargs, "num_mixtures": 7},
    }
    assert grid[-1].changes["model.likelihood_kwargs"] == {}
    assert [v.name for v in variant_grid(base, ["dmol", "softmax"])] == ["dmol", "softmax"]
    assert [v.name for v in variant_grid(base, blocks=["twin", "gated_resnet"])] == [
        "twin",
        "gated_resnet",
    ]
    (one,) = variant_grid(base)
    assert one.name == "dmol" and one.changes["model.likelihood_kwargs"] == (
        base.model.likelihood_kwargs
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"likelihoods": ["dmol", "dmol"]}, "likelihoods must be distinct"),
        ({"blocks": ["nope"]}, "unknown block 'nope'"),
        ({"likelihoods": ["gauss"]}, "unknown likelihood 'gauss'"),
        ({"likelihoods": ["softmax"], "num_mixtures": [2]}, "softmax take none"),
        ({"num_mixtures": [2, 2]}, "numbers of mixtures must be distinct"),
    ],
)
def test_variant_grid_refuses_bad_grids(kwargs, message):
    from pixelcnnpp.training.compare import variant_grid

    with pytest.raises(ValueError, match=message):
        variant_grid(TrainConfig(), **kwargs)


ENDINGS_SCRIPT = """
import json, os, signal, sys, warnings
from pathlib import Path
import torch, torch.distributed as dist
from pixelcnnpp.training import (
    DistContext, Reporter, TrainConfig, TrainingError, evaluate, load_dataset, load_model, train,
)
from pixelcnnpp.training import loop

dist.init_process_group("gloo")  # the caller's group: train() uses it and leaves it alone
rank = dist.get_rank()
root = Path(sys.argv[1])
base = TrainConfig.from_dict(json.loads((root / "config.json").read_text()))
out = {}


def ended(result):
    return {
        "status": result.status,
        "step": result.step,
        "checkpoint": Path(result.checkpoint).name if result.checkpoint else None,
        "validation": result.validation.num_images if result.validation else None,
        "test": result.test.num_images if result.test else None,
        "test_bpd": round(result.test.bits_per_dim, 6) if result.test else None,
        "samples": (result.samples is not None) if rank == 0 else None,
    }


class SignalAtStep(Reporter):
    # a real SIGTERM to this process only (rank 1), as a scheduler might send
    def step(self, step, metrics):
        if rank == 1 and step == 3:
            os.kill(os.getpid(), signal.SIGTERM)


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out["on_checkpoint"] = ended(train(base.replace(max_steps=4, checkpoint_every=4), root / "a"))
out["grad_stride_warnings"] = [str(w.message)[:80] for w in caught if "stride" in str(w.message)]
out["off_checkpoint"] = ended(train(base.replace(max_steps=5, checkpoint_every=4), root / "b"))
out["time_limit"] = ended(
    train(base.replace(max_steps=None, max_minutes=0.002, checkpoint_every=1000), root / "c")
)
out["sigterm"] = ended(
    train(base.replace(max_steps=50, checkpoint_every=1000), root / "d", reporter=SignalAtStep())
)
out["resumed"] = ended(train(resume=root / "d", overrides={"max_steps": 5}))

# an evaluation with fewer images than processes: rank 1's share is empty
model = load_model(root / "a")
ctx = DistContext(rank, 2, rank, torch.device("cpu"))
test = load_dataset("npz", "test", data_dir=base.data_dir)
one = evaluate(model, test, max_images=1, ctx=ctx)
out["one_image"] = [one.num_images, round(one.bits_per_dim, 6)]

forward = loop._NegativeLogLikelihood.forward


def nan_on_rank_1(self, x, labels=None):
    nll = forward(self, x, labels)
    return nll * float("nan") if rank == 1 else nll


loop._NegativeLogLikelihood.forward = nan_on_rank_1
try:
    train(base.replace(max_steps=10, max_bad_steps=2), root / "e")
    out["bad_steps"] = "no error"
except TrainingError as error:
    out["bad_steps"] = str(error).split(" (")[0]
(root / f"rank{rank}.json").write_text(json.dumps(out, indent=1))
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_every_distributed_ending_is_the_same_on_both_ranks(tiny_npz, tmp_path):
    """2 gloo ranks under torchrun: a run ends on and off a checkpoint step, at the time limit,
    on a SIGTERM to one rank (then resumes), and on too many bad steps on one rank; each
    ending is followed by validation, test evaluation and samples (or a clean stop), and both
    ranks end the same way, with no collective left waiting."""
    config = tiny_config(tiny_npz, num_samples=2, test_max_images=20)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    script = tmp_path / "endings.py"
    script.write_text(ENDINGS_SCRIPT)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()), str(script), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    samples = {k: v.pop("samples") for k, v in ranks[0].items() if isinstance(v, dict)}
    for v in ranks[1].values():
        if isinstance(v, dict):
            assert v.pop("samples") is None  # only rank 0 writes files
    assert ranks[0] == ranks[1]
    out = ranks[0]
    assert samples == {
        "on_checkpoint": True, "off_checkpoint": True, "time_limit": True, "sigterm": False,
        "resumed": True,
    }  # fmt: skip
    assert out["on_checkpoint"] == {
        "status": "completed", "step": 4, "checkpoint": "step-00000004.pt",
        "validation": 40, "test": 20, "test_bpd": out["on_checkpoint"]["test_bpd"],
    }  # fmt: skip
    assert out["off_checkpoint"]["checkpoint"] == "step-00000005.pt"
    assert out["off_checkpoint"]["validation"] == 40 and out["off_checkpoint"]["test"] == 20
    assert out["time_limit"]["status"] == "time_limit" and out["time_limit"]["test"] == 20
    assert out["sigterm"] == {
        "status": "interrupted", "step": 3, "checkpoint": "step-00000003.pt",
        "validation": None, "test": None, "test_bpd": None,
    }  # fmt: skip
    assert out["resumed"]["status"] == "completed" and out["resumed"]["step"] == 5
    assert out["resumed"]["test"] == 20
    assert out["one_image"][0] == 1
    assert out["bad_steps"] == "2 steps in a row"
    assert out["grad_stride_warnings"] == []
    for run in "abc":
        assert (tmp_path / run / "samples.png").is_file()
        assert json.loads((tmp_path / run / "results.json").read_text())["test"]["num_images"] == 20


def test_training_steps_read_nothing_back_from_the_device_between_logging_steps(
    tiny_npz, tmp_path, monkeypatch
):
    """Every host read of a tensor (.item(), .tolist(), bool(), float(), int()) waits for a
    GPU; between logging steps the loop makes none, also on bad steps."""
    reads: list[tuple[int, str]] = []
    current = {"step": None}

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            # Two reads happen only on CPU, where they wait for nothing: the sampler's epoch
            # order, and the likelihood's log-scale guard (off the CPU it never reads: see
            # test_the_log_scale_guard_reads_nothing_back_from_a_device).
            caller = sys._getframe(1).f_code.co_filename
            cpu_only = "torch/utils/data" in caller or caller.endswith("likelihoods/logistic.py")
            if current["step"] is not None and not cpu_only:
                reads.append((current["step"], name))
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))

    class Steps(loop_module.Reporter):
        def start(self, total, step):
            current["step"] = step

        def step(self, step, metrics):
            current["step"] = step

        def finish(self):
            current["step"] = None

    nan_on_steps(monkeypatch, {7})
    config = tiny_config(tiny_npz, max_steps=15, log_every=5, checkpoint_every=1000)
    train(config.replace(validation_size=0), tmp_path / "r", reporter=Steps(), evaluate_test=False)
    # the reads after step s happened during step s + 1: only logging steps (5, 10, 15) read
    assert {step + 1 for step, _ in reads} <= {5, 10, 15}, reads
    assert len(reads) == 3, reads
