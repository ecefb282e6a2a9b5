"""Fuzz `edgekit bench` with damaged copies of a valid tiny int8 model (issue 7: no crash reaches the user).

    python benchmarks/fuzz.py [--count 300] [--seed 0]    # writes benchmarks/fuzz.json

Each mutation (bit flips, a truncation, or a splice of the file's own bytes) goes to `edgekit bench` twice,
once for a TFLite Micro target and once for a LiteRT one, through the real command in this process (click's
CliRunner with catch_exceptions=False, so an unexpected Python exception fails the run and a native crash
here would end it). Every run must end with a result (exit 0, or 3 for a missed budget) or one
`Error: ...` line: exit 2 for a file the checks refuse, exit 1 for a runtime failure, among them crashes
contained in a child process ('crashed (SIGSEGV)'). tests/test_fuzz.py runs the same loop.

`checks_skipped` in the JSON: the same mutations given straight to the child-process runtimes (the LiteRT
smoke run and TFLite Micro), without the file checks, to count the crashes the children contain.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("nucleo-l4r5zi", "rpi4")  # TFLite Micro, LiteRT
# The model: the zoo's small CNN at test size (8x8x1 -> 10 classes, 7 KB of int8 flatbuffer), so that
# much of the file is structure rather than weights and a mutation often lands in the flatbuffer tables.
MODEL = ("small-cnn", (8, 8, 1), 10, (("dense_units", 16), ("filters", (4, 8))))


def tiny_int8_model() -> bytes:
    from calibration import reference_tflite

    builder, shape, classes, args = MODEL
    return reference_tflite(builder, shape, classes, args, "int8")


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One damaged copy: 'flip' (1 to 8 random bits), 'truncate' (cut at a random length) or 'splice'
    (a run of up to 64 of the file's own bytes copied over another place, so offsets stay plausible)."""
    kind = rng.choice(("flip", "truncate", "splice"))
    damaged = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(len(damaged) * 8)
            damaged[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        del damaged[rng.randrange(len(damaged)):]
    else:
        length = rng.randint(1, 64)
        source, destination = rng.randrange(len(data) - length), rng.randrange(len(data) - length)
        damaged[destination:destination + length] = data[source:source + length]
    return kind, bytes(damaged)


def bench_once(path: Path, target: str) -> tuple[str, str]:
    """(outcome, the error line or '') for one `edgekit bench PATH --target TARGET`. Outcome: 'result',
    'clean_error' or 'crash_contained'. Anything else raises: an exception escaping the command, or an
    error that is not exactly one `Error: ` line."""
    from click.testing import CliRunner

    from edgekit.cli import main

    done = CliRunner().invoke(main, ["bench", str(path), "--target", target, "--runs", "10", "--warmup", "0"],
                              catch_exceptions=False)
    if done.exit_code == 0 or (done.exit_code == 3 and done.stderr.startswith("Error: ")):  # 3: misses a budget
        return "result", ""
    lines = done.stderr.splitlines()
    if done.exit_code not in (1, 2) or len(lines) != 1 or not lines[0].startswith("Error: "):
        raise AssertionError(f"{path.name} on {target}: exit {done.exit_code}, stderr {done.stderr!r}")
    crashed = done.exit_code == 1 and " crashed (" in lines[0]
    return ("crash_contained" if crashed else "clean_error"), lines[0]


def fuzz(count: int = 300, seed: int = 0, folder: Path | None = None, model: bytes | None = None) -> dict:
    """Run `count` mutations against TARGETS; return the counts and a sample of each kind of error."""
    import tempfile

    model = model if model is not None else tiny_int8_model()
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    errors: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-", dir=folder) as work:
        path = Path(work) / "mutant.tflite"
        for _ in range(count):
            kind, damaged = mutate(model, rng)
            path.write_bytes(damaged)
            for target in TARGETS:
                outcome, line = bench_once(path, target)
                outcomes[outcome] += 1
                by_kind.setdefault(kind, Counter())[outcome] += 1
                if line:
                    # One example per distinct message shape: the text before the first parenthesis.
                    errors.setdefault(line.split(" (")[0].replace(str(path), "mutant.tflite"),
                                      line.replace(str(path), "mutant.tflite"))
    return {"mutations": count, "runs": count * len(TARGETS), "targets": list(TARGETS), "seed": seed,
            "model_bytes": len(model), "results": outcomes["result"], "clean_errors": outcomes["clean_error"],
            "crashes_contained": outcomes["crash_contained"],
            "by_mutation": {k: dict(v) for k, v in sorted(by_kind.items())},
            "seconds": round(time.perf_counter() - started, 1), "error_examples": sorted(errors.values())}


def fuzz_runtimes(count: int = 300, seed: int = 0, model: bytes | None = None) -> dict:
    """The same mutations with the checks skipped: each goes straight to the child-process layers (the LiteRT
    smoke run and TFLite Micro), to count the crashes they contain. What `edgekit bench` never lets through
    its checks still cannot take this process down."""
    import tempfile

    from edgekit.errors import StageError, UsageError
    from edgekit.runtimes import tflm as micro
    from edgekit.runtimes.host import smoke_run

    model = model if model is not None else tiny_int8_model()
    rng = random.Random(seed)
    outcomes: dict[str, Counter] = {"litert": Counter(), "tflite-micro": Counter()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-") as work:
        path = Path(work) / "mutant.tflite"
        for _ in range(count):
            path.write_bytes(mutate(model, rng)[1])
            for runtime, run in (("litert", lambda: smoke_run(path, "tflite")),
                                 ("tflite-micro", lambda: micro.measure(path, find_min_arena=False))):
                try:
                    result = run()
                    ran = getattr(result, "supported", True)
                    outcomes[runtime]["ran" if ran else "refused"] += 1
                except UsageError:
                    outcomes[runtime]["refused"] += 1
                except StageError as error:
                    crashed = " crashed (" in str(error)
                    outcomes[runtime]["crash_contained" if crashed else "other_error"] += 1
    return {"mutations": count, "seed": seed, "outcomes": {k: dict(v) for k, v in outcomes.items()},
            "crashes_contained": sum(v["crash_contained"] for v in outcomes.values()),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="mutations (each benched on both targets)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from edgekit.report import text as report

    counts = {"host": report.host(), **fuzz(args.count, args.seed),
              "checks_skipped": fuzz_runtimes(args.count, args.seed)}
    (HERE / "fuzz.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


if __name__ == "__main__":
    summary = main()
    print(json.dumps({k: v for k, v in summary.items() if k not in ("error_examples", "host")}, indent=2))
