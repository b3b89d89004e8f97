"""What saying which files a load read costs: the SHA-256 checks behind ``PixelDataset.files``
beside the read itself, on the installed Fashion-MNIST.

    python benchmarks/data_files.py [--repeats 5] [--data-dir /usr/share/datasets/fashion-mnist]

Per split, side by side in one run:

* ``read``: the IDX format parsing the two files (what a load did before it kept a record);
* ``record, cold``: :func:`record_files` with its digest cache cleared, as the first load of a
  process pays it (for a recompressed ``.gz`` the whole file is hashed, then its decompressed
  contents);
* ``record, cached``: the same again with the cache warm, as the validation and test loads of
  one training run pay it;
* ``load_dataset``: the whole load, with the cache cleared.

Times are medians of wall time and of the process's CPU time over ``--repeats`` rounds in
which the candidates take turns. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from measure import emit_json, environment, median_seconds

from pixelcnnpp.training import get_dataset_spec, load_dataset
from pixelcnnpp.training.data import record_files
from pixelcnnpp.training.data.files import file_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()
    spec = get_dataset_spec("fashion-mnist")
    known = spec.known_checksums()
    device = torch.device("cpu")
    report = {"benchmark": "data_files", "environment": environment(device), "splits": {}}
    print(f"{'split':<6} {'candidate':<16} {'wall s':>8} {'cpu s':>8}")
    for split in ("train", "test"):
        location = spec.format.locate(args.data_dir, split)
        if location is None:
            raise SystemExit(f"no fashion-mnist {split} split in {args.data_dir}")
        files = spec.format.read(location, split).files

        def cold(files=files):
            file_sha256.cache_clear()
            return record_files(files, known)

        def load(split=split):
            file_sha256.cache_clear()
            return load_dataset("fashion-mnist", split, data_dir=args.data_dir, validation_size=0)

        candidates = {
            "read": lambda location=location, split=split: spec.format.read(location, split),
            "record, cold": cold,
            "record, cached": lambda files=files: record_files(files, known),
            "load_dataset": load,
        }
        medians = median_seconds(candidates, device, args.repeats, args.warmup)
        for name, (wall, cpu) in medians.items():
            print(f"{split:<6} {name:<16} {wall:>8.3f} {cpu:>8.3f}")
        checks = [f.checksum for f in cold()]
        report["splits"][split] = {
            "checksums": checks,
            **{name: {"wall_s": wall, "cpu_s": cpu} for name, (wall, cpu) in medians.items()},
        }
    emit_json(report)


if __name__ == "__main__":
    main()
