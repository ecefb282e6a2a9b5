"""The README's measured figures, filled in from the benchmark outputs so that they cannot drift.

    python benchmarks/readme.py --write   # rewrite the generated regions of README.md (in the repository's root)
    python benchmarks/readme.py           # list the regions that differ from the JSON; exit 1 if any

Each figure in README.md is either inside a region marked

    <!-- generated:NAME -->
    ...
    <!-- /generated -->

whose text this script makes from benchmarks/*.json (the files the benchmark scripts write), or a link to
the docs/*.md page a benchmark script writes. tests/test_readme.py fails when a region differs from what its
JSON gives. Reads JSON only: no edgekit, no TensorFlow.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from edgekit.report import latency
from edgekit.units import size_text

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REGENERATE = "python benchmarks/readme.py --write"
_NUMBER_UNIT = re.compile(r"(\d) (s|ms|B|KB|KiB|MiB|GiB|px|bytes|runs|points)\b")
REGION = re.compile(r"(<!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def load(name: str) -> dict:
    """benchmarks/NAME.json."""
    return json.loads((ROOT / "benchmarks" / f"{name}.json").read_text())


def _prose(text: str) -> str:
    """One paragraph, wrapped as the README's hand-written paragraphs are, never between a number and its unit."""
    glued = _NUMBER_UNIT.sub("\\1\0\\2", text)
    return textwrap.fill(glued, 110, break_on_hyphens=False, break_long_words=False).replace("\0", " ") + "\n"


def _kib(size: int) -> str:
    return size_text(size)


def _machine(host: dict) -> str:
    return f"{host['cpu']}, {host['cores']} cores"


def default_build() -> str:
    results, bundles, optimize = load("results"), load("bundles"), load("optimize_table")
    build = next(b for b in results["build_time"]["builds"] if b["recipe"] == "digits-cnn")
    stages = ", ".join(f"{stage} {seconds:g} s" for stage, seconds in build["stages_s"].items())
    metrics = ", ".join(f"{variant} {value:.4f}" for variant, value in build["metrics"].items())
    shipped = next(f["bytes"] for f in bundles["bundles"]["sbc (rpi4, edgekit build)"] if f["file"] == "int8.tflite")
    rows = next(m for m in optimize["models"] if m["recipe"] == "digits-cnn")["rows"]
    float32, pruned = rows["float32"], rows["50% + QAT"]
    return _prose(
        f"Measured by `benchmarks/run.py` on {_machine(results['host'])} (`benchmarks/results.json`; every figure "
        f"of that run: [docs/benchmarks.md](docs/benchmarks.md)): `edgekit build --target {build['target']}` with "
        f"the default `{build['recipe']}` recipe in an empty folder took {build['wall_s']:g} s wall ({stages}); "
        f"test {build['metric']} {metrics}. The `int8.tflite` it ships is {_kib(shipped)} "
        f"(`benchmarks/bundles.json`, [docs/bundles.md](docs/bundles.md)). The same recipe's 50% pruning + QAT "
        f"through `edgekit optimize` gives an int8 file of {_kib(pruned['size_bytes'])}, "
        f"{pruned['size_bytes'] / float32['size_bytes']:.0%} of the float32 file ({_kib(float32['size_bytes'])}), "
        f"with {pruned['sparsity']:.1%} of its weights zero (`benchmarks/optimize_table.json`, "
        f"[docs/optimize.md](docs/optimize.md))."
    )


def resume() -> str:
    run = load("resume")
    cases = run["resumed"]

    def case(name: str) -> str:
        entry = cases[name]
        return f"{entry['resumed_run_s']:g} s ({entry['saved_share']:.0%} saved)"

    return _prose(
        f"Measured with `benchmarks/resume.py` ({run['recipe']} for {run['target']} on {_machine(run['host'])}, "
        f"others' work on it too; `benchmarks/resume.json`): a full build took {run['full_build_s']:g} s; the "
        f"same command after a finished build {case('unchanged')}; after a kill in bench {case('killed_in_bench')}; "
        f"after a kill right after training {case('killed_after_train')}; with one more `qat_epochs` "
        f"{case('qat_epochs_changed')}, reusing the trained model and the float benchmarks."
    )


def cli_startup() -> str:
    startup = load("results")["cli_startup"]
    fast = {c: e for c, e in startup["commands"].items() if not c.startswith("edgekit inspect")}
    medians = [entry["median_s"] for entry in fast.values()]
    names = ", ".join(f"`{command}`" for command in fast)
    rounds = next(iter(fast.values()))["rounds"]
    inspected = [f"{command.rsplit('.', 1)[-1]} {entry['median_s']:.2f} s" for command, entry in
                 startup["commands"].items() if command not in fast]
    also = f" `edgekit inspect` on a model of about 300 KB, start to finish: {', '.join(inspected)}." * bool(inspected)
    return _prose(f"{names} never import TensorFlow: {min(medians):.2f}-{max(medians):.2f} s each (median of "
                  f"{rounds} runs, `benchmarks/results.json`).{also}")


def export() -> str:
    bundles = load("bundles")
    array = bundles["c_arrays"]["digits-cnn int8"]
    files = ", ".join(f"`{f['file']}`" for f in bundles["bundles"]["mcu (nucleo-l4r5zi)"])
    return _prose(f"For the default build's int8 model on nucleo-l4r5zi (`benchmarks/bundles.json`, "
                  f"[docs/bundles.md](docs/bundles.md)): `{array['array']}[]` holds {array['model_bytes']:,} "
                  f"bytes, `model_arena.h` says `{array['arena_line']}`, and the folder holds {files}.")


def compare() -> str:
    found = load("bundles")["compare"]
    result, estimate = found["result"], found["estimate"]
    error = estimate["ms"] / result["latency_ms"] - 1
    return _prose(
        f"In `benchmarks/bundles.json` the board bundle's `bench_on_device.py` ran on the development machine "
        f"itself ({result['device']}, {result['runtime']}), standing in for {found['target']}: "
        f"{result['latency_ms']:.3g} ms {result['statistic']} ({result['threads']} thread), a "
        f"{result['memory_what']} of {result['memory_bytes'] / 2**20:.1f} MiB; {found['target']}'s estimate for the "
        f"same file is {estimate['ms']:.3g} ms ({estimate['runtime']}, {estimate.get('basis', 'estimated')}, "
        f"{estimate.get('band') or '±{:.0%}'.format(estimate['expected_error'])}), an error of {error:+.0%}. That "
        f"is the gap between this x86 host and the board, not the estimate's error, and `compare` says so: it "
        f"refuses an x86-64 measurement for an Arm target unless `--force`, which marks the comparison. On the "
        f"board the same two commands give the real comparison."
    )


def render_report() -> str:
    run = load("report_screenshots")
    shots = run["screenshots"]
    sizes = "; ".join(f"{name} {shot['px'][0]} x {shot['px'][1]:,} px, rendered in {shot['render_seconds']:g} s"
                      for name, shot in shots.items())
    return _prose(
        f"`benchmarks/report_screenshots.py` renders the default build's page in headless Chromium at desktop and "
        f"phone widths (`benchmarks/report_screenshots.json`, [docs/report.md](docs/report.md)): `edgekit report` "
        f"took {run['report_seconds']:g} s, the page is {run['page_bytes'] / 1000:,.0f} KB; {sizes} from process "
        f"start to PNG (median of {len(shots['desktop']['render_seconds_each'])} launches of "
        f"{run['chromium'].split(' built')[0]} on {_machine(run['host'])})."
    )


def sweep() -> str:
    run = load("sweep_front")
    varied = " and ".join(f"`{key}`" for key, values in run["grid"].items() if len(values) > 1)
    took = ", ".join(f"{seconds:g} s with {workers.replace('_', ' ')}"
                     for workers, seconds in run["wall_seconds"].items())
    fronts = [f"- {target}: best {front['best']} ({front['best_metric']:.4f}); front {', '.join(front['front'])}\n"
              for target, front in run["fronts"].items()]
    return _prose(
        f"`benchmarks/sweep_front.py` (`benchmarks/sweep_front.json`, [docs/sweep.md](docs/sweep.md)): "
        f"{run['recipe']} over {len(run['points'])} points (every combination of {varied}) on "
        f"{', '.join(run['targets'])} took {took}; per target, the best point that fits and the front:"
    ) + "\n" + "".join(fronts)


def bench_targets() -> str:
    run = load("bench_targets")
    label, rows = next((label, rows) for label, rows in run["models"].items() if label.startswith("digits-cnn"))
    first = rows[0]
    lines = ["| target | fits | latency (target) | RAM |", "|---|---|---|---|"]
    for row in rows:
        estimate, misses = row["target_latency"], [c["budget"] for c in row["fit"]["checks"] if c["ok"] is False]
        fits = "yes" if row["fit"]["fits"] else f"no ({', '.join(misses)})"
        lines.append(f"| {row['target']} | {fits} | {latency.figure(estimate)} | "
                     f"{size_text(row['ram']['required_bytes'])} ({row['ram']['basis']}) |")
    return _prose(
        f"`benchmarks/bench_targets.py` (`benchmarks/bench_targets.json`; every reference model: "
        f"[docs/bench-targets.md](docs/bench-targets.md)): {label}, {first['precision']} with random weights "
        f"({first['params']:,} parameters, {first['macs']:,} MACs, {_kib(first['size_bytes'])}), on "
        f"{_machine(run['host'])}:"
    ) + "\n" + "\n".join(lines) + "\n"


REGIONS: dict[str, Callable[[], str]] = {
    "default-build": default_build,
    "resume": resume,
    "cli-startup": cli_startup,
    "bench-targets": bench_targets,
    "export": export,
    "compare": compare,
    "render-report": render_report,
    "sweep": sweep,
}


def regions(text: str) -> dict[str, str]:
    """NAME -> the text between a region's markers, as the README holds it."""
    return {match["name"]: match["body"] for match in REGION.finditer(text)}


def render(text: str) -> str:
    """`text` with every known region's body made again from the JSON."""
    return REGION.sub(lambda m: m[1] + REGIONS[m["name"]]() + m[4] if m["name"] in REGIONS else m[0], text)


def stale(text: str) -> list[str]:
    """The regions of `text` whose bodies differ from the JSON, unknown regions, and regions missing."""
    found = regions(text)
    problems = [f"{name} (unknown region)" for name in found if name not in REGIONS]
    problems += [f"{name} (missing)" for name in REGIONS if name not in found]
    problems += [name for name, body in found.items() if name in REGIONS and body != REGIONS[name]()]
    return problems


def main(argv: list[str]) -> int:
    if argv not in ([], ["--write"]):
        print(f"usage: {REGENERATE} | python benchmarks/readme.py", file=sys.stderr)
        return 2
    text = README.read_text()
    if argv:
        README.write_text(render(text))
        print(README.relative_to(ROOT))
        return 0
    problems = stale(text)
    for problem in problems:
        print(f"README.md: region {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
