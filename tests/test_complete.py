"""Image completion: ``model.complete`` keeps the known pixels exactly, draws the rest from the
model's conditional distribution (checked against enumeration with a chi-square test), gives
the same images by both methods, and refuses bad input. Sampling and completion run with TF32
off.

Float64 models (as in ``test_sampling.py``), so that the two methods' summation orders cannot
move a draw across a bin edge.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import chisquare
from test_sampling import DTYPE, conditioning, make

from pixelcnnpp.autoregressive import list_blocks, set_tf32

CASES = [
    # image_shape, num_stages, num_resnet, likelihood, num_bits, num_classes, cond_dim, n
    ((1, 5, 7), 3, 1, "dmol", 8, None, None, 3),
    ((3, 4, 3), 2, 1, "softmax", 3, None, 2, 2),
    ((2, 6, 6), 3, 1, "dmol", 5, 3, None, 2),
]


def _images(model, n, seed=3):
    c, h, w = model.config.image_shape
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**model.config.num_bits, (n, c, h, w), generator=gen)


def _complete(model, x, num_known, method, seed=4, **kwargs):
    labels, cond = conditioning(model, x.shape[0])
    gen = torch.Generator().manual_seed(seed)
    return model.complete(x, num_known, labels, cond, method=method, generator=gen, **kwargs)


def _raster(x):
    return x.flatten(2)  # [B, C, H*W]: pixels in raster order


@pytest.mark.parametrize("block", list_blocks())
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_cached_and_naive_completions_are_identical_and_keep_the_known_pixels(case, block):
    *build, n = case
    model = make(*build, block=block)
    _, h, w = model.config.image_shape
    x = _images(model, n)
    original = x.clone()
    for num_known in (1, w - 1, w, 2 * w + 3, h * w - 1):
        naive = _complete(model, x, num_known, "naive")
        cached = _complete(model, x, num_known, "cached")
        assert torch.equal(naive, cached), (num_known, (naive != cached).nonzero()[:5].tolist())
        assert cached.dtype == torch.long and cached.shape == x.shape
        assert torch.equal(_raster(cached)[:, :, :num_known], _raster(x)[:, :, :num_known])
        assert not torch.equal(_raster(cached)[:, :, num_known:], _raster(x)[:, :, num_known:])
    assert torch.equal(x, original), "complete must not modify its input"


@pytest.mark.parametrize("method", ["cached", "naive"])
def test_completing_nothing_is_sampling(method):
    model = make((2, 4, 5), 2, 1, "dmol", 8, 2, None)
    x = _images(model, 3)
    labels, _ = conditioning(model, 3)
    sampled = model.sample(3, labels, method=method, generator=torch.Generator().manual_seed(4))
    assert torch.equal(_complete(model, x, 0, method), sampled)


@pytest.mark.parametrize("method", ["cached", "naive"])
def test_completing_everything_returns_the_images(method):
    model = make((1, 3, 4), 2, 1, "softmax", 2, None, None)
    x = _images(model, 2)
    out = _complete(model, x, 12, method)
    assert torch.equal(out, x) and out is not x


def test_completion_accepts_float_pixels_holding_integers():
    model = make((1, 3, 3), 2, 1, "dmol", 4, None, None)
    x = _images(model, 2)
    assert torch.equal(_complete(model, x.double(), 4, "cached"), _complete(model, x, 4, "cached"))


@pytest.mark.parametrize("method", ["cached", "naive"])
def test_completion_reports_progress_for_the_rows_it_draws(method):
    model = make((1, 4, 3), 2, 1, "softmax", 2, None, None)
    calls = []
    _complete(model, _images(model, 1), 4, method, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # rows 1 (partly known), 2 and 3


@pytest.mark.parametrize(
    ("num_known", "match"),
    [
        (-1, r"num_known must be an integer in \[0, 12\].*got -1"),
        (13, r"num_known must be an integer in \[0, 12\].*got 13"),
        (2.0, r"num_known must be an integer in \[0, 12\].*got 2.0"),
        (True, r"num_known must be an integer in \[0, 12\].*got True"),
    ],
)
def test_bad_num_known_raises(num_known, match):
    model = make((1, 3, 4), 2, 1, "softmax", 2, None, None)
    with pytest.raises(ValueError, match=match):
        model.complete(_images(model, 1), num_known)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(2, 1, 3, 3, dtype=torch.long), r"x must have shape .*\(1, 3, 4\)"),
        (torch.zeros(1, 3, 4, dtype=torch.long), r"x must be \[B, C, H, W\] = \[B, 1, 3, 4\]"),
        (torch.full((1, 1, 3, 4), 4), r"\[0, 3\]"),
        (torch.full((1, 1, 3, 4), 0.5), "integer"),
        ("pixels", r"x must be \[B, C, H, W\]"),
    ],
)
def test_bad_images_raise(x, match):
    model = make((1, 3, 4), 2, 1, "softmax", 2, None, None)
    with pytest.raises(ValueError, match=match):
        model.complete(x, 2)


def test_bad_completion_options_raise():
    model = make((1, 3, 4), 2, 1, "softmax", 2, 2, None)
    x = _images(model, 2)
    with pytest.raises(ValueError, match=r"labels .* are required"):
        model.complete(x, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        model.complete(x, 2, torch.tensor([0, 1]), method="fast")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        model.complete(x, 2, torch.tensor([0, 1]), temperature=0.0)


# -- exactness: completions follow the model's conditional distribution --------------------------


def _conditional_by_enumeration(model, x, num_known, labels):
    """Every completion of image ``x [1, C, H, W]`` after ``num_known`` pixels, and its
    probability under the model given the known pixels: ``[M, C, H, W]``, ``[M]``."""
    c, h, w = model.config.image_shape
    levels = 2**model.config.num_bits
    free = c * (h * w - num_known)
    values = torch.tensor(list(itertools.product(range(levels), repeat=free)))  # [M, free]
    images = _raster(x).repeat(len(values), 1, 1)  # [M, C, H*W]
    images[:, :, num_known:] = values.view(len(values), h * w - num_known, c).transpose(1, 2)
    images = images.view(-1, c, h, w)
    with torch.no_grad():
        log_p = model(images, labels.expand(len(values)) if labels is not None else None).log_prob(
            images
        )
    return images, torch.softmax(log_p, dim=0)


@pytest.mark.parametrize(
    ("shape", "likelihood", "bits", "classes", "num_known"),
    [((1, 2, 2), "dmol", 2, None, 2), ((2, 1, 3), "softmax", 1, 3, 1)],
)
def test_completions_follow_the_conditional_distribution(
    shape, likelihood, bits, classes, num_known
):
    """Chi-square test (fixed seeds) of 6000 completions of one image against the model's
    conditional distribution of the remaining pixels, computed by enumerating them; the same
    counts are clearly rejected against a sharper distribution (the conditional to the power
    1.5), so the test can tell such distributions apart."""
    model = make(shape, 2, 1, likelihood, bits, classes, None)
    x = torch.zeros(1, *shape, dtype=torch.long)
    labels = torch.tensor([1]) if classes else None
    images, probs = _conditional_by_enumeration(model, x, num_known, labels)
    n = 6000
    gen = torch.Generator().manual_seed(0)
    draws = model.complete(
        x.expand(n, -1, -1, -1), num_known, labels.expand(n) if classes else None, generator=gen
    )
    match = (draws.flatten(1)[:, None, :] == images.flatten(1)[None]).all(-1)  # [n, M]
    assert match.sum(1).eq(1).all(), "every completion is one of the enumerated images"
    counts = match.sum(0).double()
    expected = probs.double() * n
    assert expected.min() > 5, "cells too small for a chi-square test"
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3

    sharper = probs.double() ** 1.5  # as if drawn at temperature 2/3
    sharper = sharper / sharper.sum() * n
    assert chisquare(counts.numpy(), sharper.numpy()).pvalue < 1e-6


# -- TF32 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cached", "naive"])
@pytest.mark.parametrize("call", ["sample", "complete"])
def test_float32_sampling_runs_with_tf32_off_and_restores_it(monkeypatch, method, call):
    """The TF32 switches seen while the head draws each pixel are off (float32 cached and
    naive sampling would otherwise diverge on a GPU); the user's setting comes back after."""
    model = make((1, 3, 3), 2, 1, "dmol", 8, None, None).float()
    seen = []
    draw = model.head.sample

    def recording_sample(*args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return draw(*args, **kwargs)

    monkeypatch.setattr(model.head, "sample", recording_sample)
    # torch.backends' switches are properties of module objects: saved and set by hand
    # (monkeypatch cannot always restore them)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(True)
    try:
        if call == "sample":
            model.sample(2, method=method)
        else:
            model.complete(torch.zeros(2, 1, 3, 3, dtype=torch.long), 4, method=method)
        after = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    assert seen and set(seen) == {(False, False)}
    assert after == (True, True)


def test_float64_cond_is_used_by_completion():
    """The conditioning vector reaches the completed pixels (both methods)."""
    model = make((1, 3, 3), 2, 1, "dmol", 8, None, 2)
    x = _images(model, 2)
    outs = []
    for scale in (0.0, 3.0):
        cond = torch.full((2, 2), scale, dtype=DTYPE)
        for method in ("naive", "cached"):
            gen = torch.Generator().manual_seed(0)
            outs.append(model.complete(x, 3, cond=cond, method=method, generator=gen))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[2], outs[3])
    assert not torch.equal(outs[0], outs[2])
