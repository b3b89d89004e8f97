"""``pixelcnnpp.checks``: one integer check for every layer, with the message style the
library promises (the name, what was expected, what came)."""

from __future__ import annotations

import doctest

import pytest

import pixelcnnpp.checks
import pixelcnnpp.registry
from pixelcnnpp.checks import check_int, is_int
from pixelcnnpp.training import DatasetError
from pixelcnnpp.training.data.errors import check_int as check_data_int


@pytest.mark.parametrize("module", [pixelcnnpp.checks, pixelcnnpp.registry])
def test_module_examples_run(module):
    failed, attempted = doctest.testmod(module)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (-3, True), (True, False), (False, False), (1.0, False), ("1", False)],
)
def test_is_int_refuses_bools_floats_and_strings(value, ok):
    assert is_int(value) is ok


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("k", 0), {}, "k must be an integer >= 1, got 0"),
        (("k", True), {}, "k must be an integer >= 1, got True"),
        (("k", 17, 1, 16), {}, "k must be an integer in 1..16, got 17"),
        (("k", 2.0), {"expected": "a positive integer"}, "k must be a positive integer, got 2.0"),
    ],
)
def test_check_int_names_what_was_expected_and_what_came(args, kwargs, message):
    with pytest.raises(ValueError) as error:
        check_int(*args, **kwargs)
    assert str(error.value) == message
    assert check_int("k", 16, 1, 16) == 16


def test_the_data_package_raises_its_own_error():
    with pytest.raises(DatasetError, match="subset must be an integer >= 1, got 0"):
        check_data_int("subset", 0, 1)
