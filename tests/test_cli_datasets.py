"""``pixelcnn datasets`` as a person sees it: in a real terminal (a pseudo-terminal) 80 columns
wide, every line fits, no URL or path is cut, and the listing stays short."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from pixelcnnpp.training import get_dataset_spec, list_datasets

pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")
fcntl = pytest.importorskip("fcntl", reason="needs a POSIX pseudo-terminal")
termios = pytest.importorskip("termios", reason="needs a POSIX pseudo-terminal")

URL = re.compile(r"https?://[^\s)]+")


def run_in_terminal(args: list[str], columns: int, env: dict[str, str]) -> str:
    """``python -m pixelcnnpp.cli ARGS`` with stdout and stderr on a terminal ``columns`` wide."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "pixelcnnpp.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, **env, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"},
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 1 << 16)
        except OSError:  # the terminal closes when the program ends
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=120) == 0, output.decode()
    return output.decode().replace("\r\n", "\n")


def test_datasets_reads_at_80_columns(tmp_path):
    """Regression (issue 12.11): at 80 columns the listing was 139 lines, URLs folded
    mid-word in a narrow table column."""
    fashion = tmp_path / "data" / "fashion-mnist"
    fashion.mkdir(parents=True)
    for name, ndim in (("train-images-idx3-ubyte.gz", 3), ("train-labels-idx1-ubyte.gz", 1)):
        shape = (2, 28, 28)[:ndim] if ndim == 3 else (2,)
        header = bytes([0, 0, 8, ndim]) + b"".join(struct.pack(">I", d) for d in shape)
        (fashion / name).write_bytes(gzip.compress(header + np.zeros(shape, np.uint8).tobytes()))
    env = {"PIXELCNNPP_DATA": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    output = run_in_terminal(["datasets"], 80, env)
    lines = output.splitlines()
    assert max(map(len, lines)) <= 80, output
    assert len(lines) <= 70, output
    urls_shown = {url.rstrip(".,;") for line in lines for url in URL.findall(line)}
    for name in set(list_datasets()) - {"fashion-mnist"}:  # how to get each one not found
        assert f"\n{name}\n" in output, output
        for url in URL.findall(get_dataset_spec(name).how_to_get):
            assert url.rstrip(".,;") in urls_shown, f"{url} is cut or missing:\n{output}"
    row = next(line for line in lines if line.startswith("│ fashion-mnist "))
    assert "1x28x28" in row and "yes" in row
    assert any(line.startswith("│ cifar10 ") and "no" in line for line in lines)
