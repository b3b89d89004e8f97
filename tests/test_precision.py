"""TF32 switches: exact_float32 turns both off inside and restores the user's choice after."""

import pytest
import torch

from pixelcnnpp.autoregressive import exact_float32, set_tf32, tf32


def switches():
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def restore_switches():
    before = switches()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("enabled", [True, False])
def test_exact_float32_turns_tf32_off_and_restores(restore_switches, enabled):
    set_tf32(enabled)
    assert switches() == (enabled, enabled)
    with exact_float32():
        assert switches() == (False, False)
    assert switches() == (enabled, enabled)
    # The legacy switches keep torch's own query consistent (no mixed-API error).
    assert torch.get_float32_matmul_precision() == ("high" if enabled else "highest")


def test_exact_float32_restores_after_an_error(restore_switches):
    set_tf32(True)
    with pytest.raises(KeyError), exact_float32():
        raise KeyError("x")
    assert switches() == (True, True)


@pytest.mark.parametrize(("before", "inside"), [(False, True), (True, False), (True, True)])
def test_tf32_sets_the_switches_inside_and_restores_them(restore_switches, before, inside):
    set_tf32(before)
    with tf32(inside):
        assert switches() == (inside, inside)
    assert switches() == (before, before)
