"""Fuzz edgekit with damaged model files: .tflite (issue 7), .onnx and .keras (issue 18; benchmarks/fuzz_formats.py).

    python benchmarks/fuzz.py [--count 300] [--seed 0] [--formats tflite,onnx,keras]

writes benchmarks/fuzz.json (a section per format; formats not run keep their section) and rewrites the
fuzzing section of docs/benchmarks.md in place (benchmarks/run.py renders the same section from fuzz.json).

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
import re
import time
from collections import Counter
from pathlib import Path

from fuzz_formats import BYTE_SHARE, Tally, fuzz_keras, fuzz_onnx, run_command
from fuzz_formats import mutate_bytes as mutate

HERE = Path(__file__).resolve().parent
TARGETS = ("nucleo-l4r5zi", "rpi4")  # TFLite Micro, LiteRT
# The model: the zoo's small CNN at test size (8x8x1 -> 10 classes, 7 KB of int8 flatbuffer), so that
# much of the file is structure rather than weights and a mutation often lands in the flatbuffer tables.
MODEL = ("small-cnn", (8, 8, 1), 10, (("dense_units", 16), ("filters", (4, 8))))


def tiny_int8_model() -> bytes:
    from calibration import reference_tflite

    builder, shape, classes, args = MODEL
    return reference_tflite(builder, shape, classes, args, "int8")


def bench_once(path: Path, target: str) -> tuple[str, str]:
    """(outcome, the error line or '') for one `edgekit bench PATH --target TARGET`: 'result', 'clean_error',
    'crash_contained', or 'failure' (an exception escaping the command, or an error that is not exactly one
    `Error: ` line naming the file; see fuzz_formats.run_command)."""
    return run_command(["bench", str(path), "--target", target, "--runs", "10", "--warmup", "0"], path)


def fuzz(count: int = 300, seed: int = 0, folder: Path | None = None, model: bytes | None = None) -> dict:
    """Run `count` mutations against TARGETS; return the counts and a sample of each kind of error."""
    import tempfile

    model = model if model is not None else tiny_int8_model()
    rng, tally = random.Random(seed), Tally("mutant.tflite")
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-", dir=folder) as work:
        path = Path(work) / "mutant.tflite"
        for _ in range(count):
            kind, damaged = mutate(model, rng)
            path.write_bytes(damaged)
            for target in TARGETS:
                tally.add(kind, *bench_once(path, target), path, f"bench --target {target}")
    counts = tally.counts(count, [f"bench --target {target}" for target in TARGETS], seed, {"tflite": len(model)})
    return {**counts, "targets": list(TARGETS)}


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


FORMATS = ("tflite", "onnx", "keras")
SECTION_TITLE = "Fuzzing: damaged model files (goal: no traceback, no dead process)"
_COMMANDS = {"tflite": "`bench` on nucleo-l4r5zi (TFLite Micro) and rpi4 (LiteRT)",
             "onnx": "`bench --target rpi4` and `inspect`", "keras": "`convert --to tflite-float32`"}


def markdown_section(counts: dict, number: int) -> str:
    """The fuzzing section of docs/benchmarks.md from fuzz.json's `counts`: a column per format."""
    formats = [f for f in FORMATS if f in counts]
    rows = [("mutations", "mutations"), ("runs", "runs"), ("results (exit 0, or 3: a missed budget)", "results"),
            ("clean one-line errors (exit 1 or 2)", "clean_errors"),
            ("crashes contained in a child", "crashes_contained"), ("tracebacks", "tracebacks")]
    lines = [f"## {number}. {SECTION_TITLE}", "",
             f"Written by `benchmarks/fuzz.py` (seed {counts[formats[0]]['seed']}) on {counts['host']['cpu']}, "
             f"{counts['host']['cores']} cores. Each mutant of a valid tiny model (the zoo's small CNN at 8x8x1) goes "
             "through the real command in one process (click's CliRunner): that the process is still there to "
             "count is the proof that nothing killed it. A run ends with a result or one `Error:` line naming the "
             "file; anything else counts as a traceback.", "",
             "| | " + " | ".join(f".{f}" for f in formats) + " |", "|---|" + "---:|" * len(formats),
             "| commands | " + " | ".join(_COMMANDS[f] for f in formats) + " |"]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(f"{counts[f].get(key, 0):,}" for f in formats) + " |")
    lines.append("| seconds | " + " | ".join(f"{counts[f]['seconds']:.0f}" for f in formats) + " |")
    lines.append("")
    for f in formats:
        kinds = ", ".join(f"{kind} {sum(outcomes.values())}" for kind, outcomes in counts[f]["by_mutation"].items())
        lines.append(f"- .{f} runs by mutation kind: {kinds}.")
    lines.append(f"- .onnx: {BYTE_SHARE['onnx']:.0%} of the mutants damaged as bytes (flip, truncate, splice), the "
                 "others by one field of the parsed ModelProto. .keras: the tf_keras and the Keras 3 archive in turn, "
                 f"{BYTE_SHARE['keras']:.0%} damaged as zip bytes, the others by a member changed (config.json by "
                 "JSON mutations, metadata.json, model.weights.h5 by bytes or by h5py) and repacked into a valid zip.")
    skipped = counts.get("tflite", {}).get("checks_skipped")
    if skipped:
        lines.append(f"- With edgekit's file checks skipped, the same {skipped['mutations']} .tflite mutants given "
                     "straight to the LiteRT and TFLite Micro child processes: crashes "
                     f"{skipped['crashes_contained']}, each contained in its child.")
    return "\n".join(lines) + "\n"


def rewrite_section(page: str, section: str) -> str:
    """`page` with its fuzzing section (from its heading to the next `## `) replaced by `section`, renumbered
    to keep its place; appended after the last numbered section when the page has none."""
    heading = re.compile(r"^## (\d+)\. Fuzzing", re.MULTILINE)
    found = heading.search(page)
    if found is None:
        numbers = [int(n) for n in re.findall(r"^## (\d+)\.", page, re.MULTILINE)]
        number = max(numbers, default=0) + 1
        return page.rstrip("\n") + "\n\n" + re.sub(r"^## \d+\.", f"## {number}.", section, count=1)
    following = re.compile(r"^## ", re.MULTILINE).search(page, found.end())
    end = following.start() if following else len(page)
    section = re.sub(r"^## \d+\.", f"## {found[1]}.", section, count=1)
    return page[:found.start()] + section + ("\n" + page[end:] if following else "")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="mutations per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, of: " + ", ".join(FORMATS))
    args = parser.parse_args()
    from edgekit.report import text as report

    previous = HERE / "fuzz.json"
    counts = json.loads(previous.read_text()) if previous.is_file() else {}
    counts = {k: v for k, v in counts.items() if k in FORMATS}  # an older flat file holds no format sections
    counts["host"] = report.host()
    for fmt in args.formats.split(","):
        if fmt == "tflite":
            counts["tflite"] = {**fuzz(args.count, args.seed), "checks_skipped": fuzz_runtimes(args.count, args.seed)}
        elif fmt == "onnx":
            counts["onnx"] = fuzz_onnx(args.count, args.seed)
        elif fmt == "keras":
            counts["keras"] = fuzz_keras(args.count, args.seed)
        else:
            parser.error(f"unknown format '{fmt}'; formats: {', '.join(FORMATS)}")
        previous.write_text(json.dumps(counts, indent=2) + "\n")  # each format as it finishes
    page = HERE.parent / "docs" / "benchmarks.md"
    page.write_text(rewrite_section(page.read_text(), markdown_section(counts, 0)))
    return counts


if __name__ == "__main__":
    summary = main()
    print(json.dumps({f: {k: v for k, v in summary[f].items() if k not in ("error_examples", "failures")}
                      for f in FORMATS if f in summary}, indent=2))
