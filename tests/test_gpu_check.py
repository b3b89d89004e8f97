"""The CPU-checkable part of benchmarks/gpu_check.py runs here, as a user would run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_passes_its_cpu_part(tmp_path):
    checks = "resume,sampling,blocks,ddp,no_gpu,eval_devices"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--checks", checks,
         "--compile-backend", "eager"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])["checks"]
    outcome = {r["check"].split(" (")[0].split(":")[0]: r["result"] for r in results}
    assert list(outcome.values()) == ["PASS", "PASS", "PASS", "SKIP", "PASS", "PASS"], outcome
    lines = [line for line in done.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert len(lines) == 6
    assert "needs CUDA" in next(line for line in lines if line.startswith("SKIP"))
