"""Replayed cached sampling: a row's operations recorded once per pattern of levels and replayed
(a tape of ATen operations on CPU, a CUDA graph on a GPU) draw exactly the images of running
every row eagerly, for every registered block, in float64 and float32, in sampling and in
completion. The tape is the CPU stand-in for a capture: it refuses what a capture cannot
repeat, and a step that depends on the row (which a CUDA graph would replay wrongly) makes the
replayed images differ, which these tests detect.
"""

from __future__ import annotations

import contextlib
import doctest
import warnings

import pytest
import torch
from test_sampling import SAMPLING_CASES, case_id, conditioning, draw, make

from pixelcnnpp.autoregressive import list_blocks
from pixelcnnpp.autoregressive import replay as replay_module
from pixelcnnpp.autoregressive import sampling as sampling_module
from pixelcnnpp.autoregressive.replay import NotReplayable, RowPrograms, Tape


def test_the_module_examples_run():
    result = doctest.testmod(replay_module, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0, result


def test_tape_reruns_the_operations_on_the_same_tensors():
    x, y = torch.zeros(3), torch.arange(3.0)
    row = x[1:]  # a view: not replayed, still looks into x

    def fn():
        s = y * 2  # a new tensor: its replay writes into the recorded one
        row.add_(s[1:])
        x[0] = s.sum()

    tape = Tape.record(fn)
    assert x.tolist() == [6.0, 2.0, 4.0]
    y.fill_(1.0)
    tape.replay()
    assert x.tolist() == [6.0, 4.0, 6.0]


def test_tape_replays_random_draws_from_their_generator_in_order():
    def draws(record: bool) -> list[list[float]]:
        g = torch.Generator().manual_seed(0)
        out, e = torch.zeros(4, dtype=torch.float64), torch.empty(2)

        def fn():
            out[:2] = torch.rand(2, generator=g, dtype=torch.float64)
            out[2:] = e.exponential_(generator=g)

        seen = []
        tape = None
        for _ in range(3):
            if record and tape is None:
                tape = Tape.record(fn)
            elif record:
                tape.replay()
            else:
                fn()
            seen.append(out.tolist())
        return seen

    eager = draws(record=False)
    assert draws(record=True) == eager
    assert eager[0] != eager[1]


@pytest.mark.parametrize(
    "fn",
    [lambda x: x.sum().item(), lambda x: x.nonzero(), lambda x: bool(x.any())],
    ids=["item", "nonzero", "bool"],
)
def test_tape_refuses_reading_values_to_the_host(fn):
    x = torch.ones(3)
    with pytest.raises(NotReplayable, match="host"):
        Tape.record(lambda: fn(x))


@contextlib.contextmanager
def counted(monkeypatch):
    """Counts of recorded and replayed rows while the block runs."""
    counts = {"record": 0, "replay": 0}
    record, replay = Tape.record.__func__, Tape.replay

    def counting_record(cls, fn):
        counts["record"] += 1
        return record(cls, fn)

    def counting_replay(self):
        counts["replay"] += 1
        replay(self)

    monkeypatch.setattr(Tape, "record", classmethod(counting_record))
    monkeypatch.setattr(Tape, "replay", counting_replay)
    yield counts


def _stateful(block: str) -> bool:
    """Whether the block keeps an incremental state (a cache indexed by position), whose rows
    are never replayed."""
    model = make((1, 2, 2), 1, 1, "dmol", 8, None, None, block=block)
    return hasattr(model.up[0]["ul"][0], "incremental_state")


CASES = [c for c in SAMPLING_CASES if c[0][1] >= 5]  # tall enough for rows to be replayed


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("block", list_blocks())
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_replayed_rows_draw_the_images_of_eager_rows(monkeypatch, case, block, dtype):
    *build, temperature, n = case
    model = make(*build, block=block).to(dtype)
    eager = draw(model, n, "cached", temperature=temperature, replay=False)
    with counted(monkeypatch) as counts, warnings.catch_warnings():
        warnings.simplefilter("error")
        replayed = draw(model, n, "cached", temperature=temperature, replay=True)
    assert torch.equal(eager, replayed), (eager != replayed).nonzero()[:5].tolist()
    if _stateful(block):
        assert counts == {"record": 0, "replay": 0}
    else:
        assert counts["record"] >= 1 and counts["replay"] >= 1, counts


@pytest.mark.parametrize("num_known", [0, 9, 14, 17, 35])
def test_replayed_completion_keeps_the_known_pixels_and_draws_the_eager_rest(num_known):
    model = make((2, 6, 7), 3, 1, "dmol", 8, 3, None)
    x = torch.randint(0, 256, (3, 2, 6, 7), generator=torch.Generator().manual_seed(5))
    labels, cond = conditioning(model, 3)

    def complete(replay):
        g = torch.Generator().manual_seed(6)
        return model.complete(x, num_known, labels, cond, generator=g, replay=replay)

    replayed = complete(True)
    assert torch.equal(replayed, complete(False))
    flat, original = replayed.flatten(2), x.flatten(2)
    assert torch.equal(flat[..., :num_known], original[..., :num_known])


def test_replay_is_off_by_default_on_cpu(monkeypatch):
    model = make((1, 6, 5), 3, 1, "dmol", 8, None, None)
    with counted(monkeypatch) as counts:
        draw(model, 2, "cached")
    assert counts == {"record": 0, "replay": 0}


def test_a_window_replayed_before_it_is_full_is_replayed_wrongly(monkeypatch):
    """What neither the tape nor a CUDA graph can see: a step whose Python picks other memory
    in other rows. A block evaluated on windows reads fewer rows in the first rows of the image
    than later; replaying such a row repeats its window. The sampler replays a window only once
    it is full; without that check the images differ, so the guarantee above has teeth.

    ``gated_resnet`` evaluated on its windows (two rows above), not from its weights."""
    monkeypatch.setattr(sampling_module, "_fast", lambda block: False)
    model = make((1, 8, 6), 3, 1, "dmol", 8, None, None)
    expected = draw(model, 3, "cached", replay=False)
    assert torch.equal(draw(model, 3, "cached", replay=True), expected)
    monkeypatch.setattr(sampling_module._WindowUL, "replayable", lambda self: self.state is None)
    assert not torch.equal(draw(model, 3, "cached", replay=True), expected)


def test_a_head_that_reads_values_to_the_host_runs_its_rows_eagerly(monkeypatch):
    model = make((1, 6, 5), 3, 1, "dmol", 8, None, None)
    sample = type(model.head).sample

    def reading_sample(self, features, temperature=1.0, generator=None):
        pixels = sample(self, features, temperature, generator)
        if pixels.min().item() < 0:  # a host read, after the row's first draws; never true
            raise AssertionError
        return pixels

    expected = draw(model, 3, "cached", replay=False)
    monkeypatch.setattr(type(model.head), "sample", reading_sample)
    with pytest.warns(UserWarning, match="replays no rows .* reads tensor values to the host"):
        replayed = draw(model, 3, "cached", replay=True)
    assert torch.equal(replayed, expected)


class _FakeGraph:
    """A CUDA graph on CPU: the capture records the row's operations without leaving its draws
    behind (a capture draws nothing); replays rerun them."""

    captures = 0

    def __init__(self, fn, generator, stream):
        generator = generator if generator is not None else torch.default_generator
        state = generator.get_state()
        self.tape = Tape.record(fn)
        generator.set_state(state)
        _FakeGraph.captures += 1

    def replay(self):
        self.tape.replay()


def test_on_cuda_a_pattern_is_warmed_up_then_captured_then_replayed(monkeypatch):
    monkeypatch.setattr(replay_module, "_CudaGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: type("Stream", (), {"wait_stream": id})())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: type("S", (), {"wait_stream": id})())
    init = RowPrograms.__init__

    def on_cuda(self, device, generator):
        init(self, torch.device("cuda"), generator)

    monkeypatch.setattr(RowPrograms, "__init__", on_cuda)
    model = make((3, 9, 5), 3, 1, "dmol", 8, None, None)
    expected = draw(model, 3, "cached", replay=False)
    _FakeGraph.captures = 0
    with counted(monkeypatch) as counts:
        replayed = draw(model, 3, "cached", replay=True)
    assert torch.equal(replayed, expected)
    # Rows 0-8 with 3 levels: patterns (0,1,2) at rows 0, 4, 8; (0,) at odd rows; (0,1) at 2, 6.
    # Each pattern's first row is a warm-up, its second a capture and its replay.
    assert _FakeGraph.captures == 3
    assert counts["replay"] == 9 - 3 - 3 + 3


def test_bad_replay_values_are_refused():
    model = make((1, 3, 3), 2, 1, "dmol", 8, None, None)
    with pytest.raises(ValueError, match="replay must be True, False or None"):
        model.sample(1, replay="yes")
    with pytest.raises(ValueError, match="replay must be True, False or None"):
        model.complete(torch.zeros(1, 1, 3, 3, dtype=torch.long), 2, replay=1)
