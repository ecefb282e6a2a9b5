"""How much time a resumed `edgekit build` saves over a full one, what a build killed at each stage keeps,
and which files two fresh builds share.

    python benchmarks/resume.py [--recipe digits-cnn] [--target rpi4]    # writes benchmarks/resume.json

Every build runs as `python -m edgekit build` in its own process, as a user runs it. Times are wall-clock
seconds of the whole command, Python and TensorFlow start-up included; the load average before and after
says how busy the host was. A "killed" scenario SIGKILLs a build when it logs the line named, then times
the re-run of the same command: the time saved is what a full re-run would have taken beyond it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit import recipes
from edgekit.report import text as report
from edgekit.report.manifest import versions

HERE = Path(__file__).resolve().parent
# Where the kill loop stops one build folder's successive runs: the stage, and the stderr line it waits for.
KILL_POINTS = [("data", "[data]"), ("train", "train epoch 2/"), ("baseline", "[baseline]"),
               ("optimize", "prune epoch 1/"), ("convert", "[convert]"), ("bench", "float32: accuracy"),
               ("export", "[export]")]


def run(command: list[str], kill_after: str | None = None) -> tuple[float, int, list[str]]:
    """Seconds the command ran, its exit status and its stderr lines; SIGKILLed once it logs a line starting
    with `kill_after`."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if kill_after and line.startswith(kill_after):
            process.send_signal(signal.SIGKILL)
            break
    lines += process.stderr.read().splitlines()
    status = process.wait()
    if status not in (0, -signal.SIGKILL):
        sys.exit(f"{' '.join(command)} exited {status}:\n" + "\n".join(lines[-20:]))
    return time.perf_counter() - started, status, lines


def reused(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines if ": reused from cache (key " in line]


class Bench:
    def __init__(self, root: Path, recipe: str, target: str):
        self.root, self.recipe, self.target = root, recipe, target

    def command(self, out: str, *extra: str, recipe: str | None = None) -> list[str]:
        return [sys.executable, "-m", "edgekit", "build", "--recipe", recipe or self.recipe, "--target", self.target,
                "--out", str(self.root / out), *extra]

    def folder(self, out: str) -> Path:
        return next((self.root / out).iterdir())

    def resumed(self, out: str, how: str, full: float, killed: float | None = None,
                recipe: str | None = None) -> dict:
        seconds, _, _ = run(self.command(out, recipe=recipe))
        cache = json.loads((self.folder(out) / "report.json").read_text())["cache"]
        return {"how": how, "killed_run_s": round(killed, 1) if killed else None, "resumed_run_s": round(seconds, 1),
                "saved_s": round(full - seconds, 1), "saved_share": round(1 - seconds / full, 2),
                "reused": cache["reused"], "computed": cache["computed"]}

    def kill_loop(self, reference: Path) -> dict:
        """One folder: a run killed at each point in turn, each re-run resuming from what the last one kept;
        then a run to the end, compared with the uninterrupted build in `reference`."""
        rows = []
        for stage, line in KILL_POINTS:
            seconds, status, lines = run(self.command("killed"), kill_after=line)
            rows.append({"killed_at": stage, "killed": status == -signal.SIGKILL, "run_s": round(seconds, 1),
                         "reused_from_the_run_before": reused(lines),
                         "manifest_after_kill": (self.folder("killed") / "manifest.json").exists()})
        seconds, _, lines = run(self.command("killed"))
        final = json.loads((self.folder("killed") / "report.json").read_text())
        expected = json.loads((reference / "report.json").read_text())
        verify = subprocess.run([sys.executable, "-m", "edgekit", "verify", str(self.folder("killed"))],
                                capture_output=True, text=True)
        return {"runs": rows, "final": {"run_s": round(seconds, 1), "reused": final["cache"]["reused"],
                                        "metrics_equal_uninterrupted": metrics(final) == metrics(expected),
                                        "verify_exit": verify.returncode}}

    def changed_recipe(self, full: float) -> dict:
        text = recipes.load(self.recipe).file.read_text()
        changed = self.root / f"{self.recipe}.toml"
        changed.write_text(re.sub(r"qat_epochs = (\d+)", lambda m: f"qat_epochs = {int(m[1]) + 1}", text, count=1))
        shutil.copytree(self.root / "first", self.root / "changed")
        return self.resumed("changed", "one more qat_epochs in the recipe, after a finished build", full,
                            recipe=str(changed))


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits-cnn")
    parser.add_argument("--target", default="rpi4")
    options = parser.parse_args()
    results = {"host": report.host(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
               "versions": versions(), "recipe": options.recipe, "target": options.target}
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(Path(scratch), options.recipe, options.target)
        full, _, _ = run(bench.command("first"))
        second, _, _ = run(bench.command("second"))
        results.update(full_build_s=round(full, 1), second_full_build_s=round(second, 1),
                       determinism=determinism(bench.folder("first"), bench.folder("second")))
        killed_after_train, _, _ = run(bench.command("after-train"), kill_after="[baseline]")
        killed_in_bench, _, _ = run(bench.command("in-bench"), kill_after="float32: accuracy")
        results["resumed"] = {
            "unchanged": bench.resumed("first", "the same command again after a finished build", full),
            "killed_after_train": bench.resumed("after-train", "SIGKILL when [baseline] starts, then the same "
                                                "command", full, killed_after_train),
            "killed_in_bench": bench.resumed("in-bench", "SIGKILL after the first variant is benchmarked, then "
                                             "the same command", full, killed_in_bench),
            "qat_epochs_changed": bench.changed_recipe(full),
        }
        results["force_rebuild_s"] = round(run(bench.command("first", "--force"))[0], 1)
        results["kill_loop"] = bench.kill_loop(bench.folder("first"))
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]  # other work on the host skews times
    (HERE / "resume.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def metrics(build_report: dict) -> dict:
    return {"keras": build_report["keras_test_metric"],
            "variants": {v["name"]: v["metric"]["value"] for v in build_report["variants"]}}


def determinism(first: Path, second: Path) -> dict:
    """Files of two fresh builds compared by the sha256 their manifests list, and their metrics."""
    a, b = (json.loads((folder / "manifest.json").read_text()) for folder in (first, second))
    same = sorted(name for name in a["files"] if a["files"][name]["sha256"] == b["files"].get(name, {}).get("sha256"))
    return {"byte_identical": same, "differ": sorted(set(a["files"]) - set(same)),
            "metrics_equal": a["metrics"] == b["metrics"],
            "manifest_says_identical": a["deterministic"]["identical"],
            "manifest_says_differ": sorted(a["deterministic"]["differ"])}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
