"""Device decisions for GPUs and torchrun, proven on CPU with monkeypatched CUDA queries:
native bf16, GPU indices under torchrun, the process group's options, per-device RNG
state, DDP-friendly parameter layouts."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP
from pixelcnnpp.training import distributed, rng
from pixelcnnpp.training.distributed import has_fast_bf16, init_distributed, resolve_device
from pixelcnnpp.training.loop import _standard_strides


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this process sees ``n`` GPUs of a given compute capability."""

    def make(n: int, capability: tuple[int, int] = (8, 0)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        # emulated bf16 counts as "supported" in torch: the decision must not ask it
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return make


@pytest.mark.parametrize(
    ("capability", "native"), [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)]
)
def test_bf16_is_native_from_compute_capability_8(gpus, capability, native):
    gpus(1, capability)
    assert has_fast_bf16(torch.device("cuda", 0)) is native
    assert distributed.resolve_precision("auto", torch.device("cuda", 0)) == (
        "bf16" if native else "fp32"
    )


@pytest.mark.parametrize(("capability", "warns"), [((7, 5), True), ((8, 0), False)])
def test_explicit_bf16_where_it_is_emulated_warns_and_is_kept(gpus, capability, warns):
    gpus(1, capability)
    device = torch.device("cuda", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert distributed.resolve_precision("bf16", device) == "bf16"
        assert distributed.resolve_precision("fp32", device) == "fp32"
    messages = [str(w.message) for w in caught]
    if warns:
        assert len(messages) == 1, messages
        assert "bfloat16 is emulated on this cuda device" in messages[0]
        assert "compute capability 8.0" in messages[0]
    else:
        assert messages == []


def test_explicit_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    monkeypatch.setattr(distributed, "has_fast_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="emulated on this cpu device.*AVX512-BF16 or AMX"):
        assert distributed.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert distributed.resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_bf16_capability_is_asked_of_the_run_device(gpus, monkeypatch):
    gpus(2)
    asked = []
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or (8, 6)
    )
    has_fast_bf16(torch.device("cuda", 1))
    assert asked == [torch.device("cuda", 1)]


def test_cuda_devices_follow_local_rank_and_refuse_bad_indices(gpus, monkeypatch):
    gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(
        ValueError,
        match=r"LOCAL_RANK 2 asks for GPU 2, but this process sees 2 GPUs \(0\.\.1; CUDA_VISIBLE_DEVICES=4,5\)",
    ):
        resolve_device("cuda", local_rank=2)
    with pytest.raises(
        ValueError, match=r"device 'cuda:3' asks for GPU 3, but this process sees 2 GPUs"
    ):
        resolve_device("cuda:3")
    with pytest.raises(ValueError, match="under torchrun every process would use it"):
        resolve_device("cuda:0", local_rank=1, launched=True)
    with pytest.raises(ValueError, match="GPU index"):
        resolve_device("cuda:x")


def test_cuda_without_a_gpu_is_a_clear_error(gpus):
    gpus(0)
    with pytest.raises(ValueError, match="CUDA is not available; use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_process_group_gets_a_timeout_and_the_device(gpus, monkeypatch):
    gpus(2)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda *a, **k: calls.append((a, k))
    )
    for key, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    ctx = init_distributed("cuda", timeout_minutes=45)
    ((args, kwargs),) = calls
    assert args == ("nccl",)
    assert kwargs["device_id"] == torch.device("cuda", 1)
    assert kwargs["timeout"].total_seconds() == 45 * 60
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.owns_group) == (3, 4, 1, True)
    with pytest.raises(ValueError, match="under torchrun"):
        init_distributed("cuda:0")


def test_rng_state_holds_only_the_run_device_and_restores_there(gpus, monkeypatch):
    gpus(8)
    saved = {i: torch.tensor([i], dtype=torch.uint8) for i in range(8)}
    restored = {}
    monkeypatch.setattr(
        torch.cuda, "get_rng_state", lambda device: saved[torch.device(device).index]
    )
    monkeypatch.setattr(
        torch.cuda,
        "set_rng_state",
        lambda state, device: restored.update({torch.device(device).index: state}),
    )
    monkeypatch.setattr(
        torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state was read")
    )
    state = rng.rng_state(torch.device("cuda", 5))
    assert torch.equal(state["cuda"], saved[5])
    gpus(1)  # the checkpoint resumes where one GPU is visible
    rng.set_rng_state(state, torch.device("cuda", 0))
    assert list(restored) == [0] and torch.equal(restored[0], saved[5])
    # a version-1 checkpoint held every visible GPU's state: the run device's index is used
    restored.clear()
    old = dict(state, cuda=[saved[i] for i in range(8)])
    rng.set_rng_state(old, torch.device("cuda", 3))
    assert torch.equal(restored[3], saved[3])
    restored.clear()
    rng.set_rng_state(dict(state, cuda=[saved[0]]), torch.device("cuda", 1))
    assert torch.equal(restored[1], saved[0])


def test_cpu_rng_state_round_trips_exactly():
    state = rng.rng_state(torch.device("cpu"))
    a = (torch.rand(3), np.random.rand(), random.random())
    rng.set_rng_state(state, torch.device("cpu"))
    b = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert state["cuda"] is None


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_come_back_in_their_parameters_layout(channels_last):
    """DDP buckets gradients in the parameters' layout; any other layout costs a copy per
    step and warns "Grad strides do not match bucket view strides"."""
    model = PixelCNNPP(
        PixelCNNConfig(image_shape=(1, 8, 8), num_filters=8, num_resnet=1, num_stages=2)
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    _standard_strides(model)
    model.nll(torch.randint(0, 256, (4, 1, 8, 8))).mean().backward()
    mismatched = [
        (name, p.stride(), p.grad.stride())
        for name, p in model.named_parameters()
        if p.stride() != p.grad.stride()
    ]
    assert mismatched == []


def test_torch_floor_is_stated():
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"torch>=2.4' in text
