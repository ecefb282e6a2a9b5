"""`edgekit compare`: a device's answer (edgekit.device_results reads it) against the build's estimate, and a
profile refitted to it. The estimate comes from a build folder, a bundle folder (`edgekit export`) or a saved
`edgekit bench --json`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.device_results import mismatches, parse_benchmark_model_log, parse_serial_log, read_result
from edgekit.errors import UsageError
from edgekit.feeds import InputSpec
from edgekit.report import latency as latency_text
from edgekit.units import count_text, size_text

__all__ = ["compare", "mismatches", "parse_benchmark_model_log", "parse_serial_log", "read_result", "refit", "text"]


def at_threads(estimate: dict[str, Any] | None, threads: int | None) -> dict[str, Any] | None:
    """An emulated Cortex-A figure at the thread count the measurement used (the figure is for the fastest count
    up to the profile's; the device script runs the profile's), with its band; other figures as they are."""
    by_threads = ((estimate or {}).get("emulation") or {}).get("ms_by_threads") or {}
    if not estimate or not threads or str(threads) not in by_threads or threads == estimate["threads"]:
        return estimate
    ms, factor = by_threads[str(threads)], estimate["error_factor"]
    return {**estimate, "ms": ms, "low_ms": ms / factor, "high_ms": ms * factor, "threads": threads,
            "method": f"{estimate['method']}; at the measurement's {count_text(threads, 'thread')}: {ms:.3g} ms"}


def _threads(count: int | None) -> str:
    return count_text(count, "thread") if count else "threads not stated"


def load_build(build_dir: Path, inputs: Sequence[InputSpec] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report.json, manifest.json or {}) of a build folder; of a bundle folder (`edgekit export`, no build
    behind it) or a saved `edgekit bench --json`, the same shape made from them (`_bundle`, `_bench_json`).
    `inputs` feed a bundle's model when it is benchmarked again, as `edgekit bench --input`; by default the
    bundle's own (model.json's `inputs_given`)."""
    build_dir = Path(build_dir)
    if build_dir.is_file():
        return _bench_json(build_dir)
    report_path = build_dir / "report.json"
    if not report_path.is_file() and (build_dir / "model.json").is_file():
        return _bundle(build_dir, inputs)
    if not report_path.is_file():
        raise UsageError(f"'{build_dir}' has no report.json; give the folder `edgekit build` wrote, a bundle folder "
                         "`edgekit export` wrote, or the JSON `edgekit bench --json` printed")
    manifest_path = build_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return json.loads(report_path.read_text()), manifest


def _as_report(results: list[dict[str, Any]], files: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """bench results (BenchResult.to_dict()) as a report.json's targets, one variant each, and a manifest."""
    entries = [{"target": r["target"], "selected": Path(r["file"]).stem,
                "variants": [{**r, "name": Path(r["file"]).stem}]} for r in results]
    return {"targets": entries}, {"files": files}


def _bench_json(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) and "target_latency" in r for r in data):
        raise UsageError(f"'{path}' is not the JSON `edgekit bench --json` prints (a list with one result a target)")
    return _as_report(data, {})


def _bundle(folder: Path, inputs: Sequence[InputSpec] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """A bundle folder: its model benchmarked again for the bundle's target, as `edgekit bench` would, with the
    bundle's inputs (`inputs`, else those its export was given)."""
    from edgekit import feeds, targets
    from edgekit.bench import bench_targets

    described = json.loads((folder / "model.json").read_text())
    if described.get("npu", {}).get("source_sha256"):
        raise UsageError(f"bundle '{folder}' holds the model Vela compiled for an Ethos-U, which edgekit cannot run "
                         "again; compare the serial log against the build folder the bundle came from")
    model = folder / described["model"]
    target = targets.load(described["target"])
    inputs = inputs or feeds.parse_inputs(described.get("inputs_given", []))
    if model.is_file():
        result = bench_targets(model, [target], runs=10, warmup=1, inputs=inputs)[0].to_dict()
    else:  # a microcontroller bundle holds the model as the C array of model_data.cc
        import hashlib
        import tempfile

        from edgekit.export.layouts import model_array_file

        array_file = model_array_file(folder)
        content = _c_array_bytes(array_file) if array_file else None
        if content is None or hashlib.sha256(content).hexdigest() != described.get("sha256"):
            raise UsageError(f"bundle '{folder}' has neither {described['model']} nor a model_data.cc with the "
                             "model its model.json names (sha256)")
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / described["model"]
            copy.write_bytes(content)
            result = bench_targets(copy, [target], runs=10, warmup=1)[0].to_dict()
    return _as_report([result], {described["model"]: {"sha256": described.get("sha256")}})


def _c_array_bytes(source: Path) -> bytes | None:
    """The bytes of the array edgekit's model_data.cc holds (edgekit.export.mcu.c_array), or None."""
    if not source.is_file():
        return None
    found = re.search(r"\[\]\s*=\s*\{([^}]*)\}", source.read_text(errors="replace"))
    return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-fA-F]{2})", found.group(1))) if found else None


def target_entry(report: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """report.json's `targets` entry of the target `name` (default: the lead, the first one built for)."""
    entries = report["targets"]
    if name is None:
        return entries[0]
    found = [entry for entry in entries if entry["target"] == name]
    if not found:
        raise UsageError(f"the build was not made for target '{name}'; it was for "
                         f"{', '.join(entry['target'] for entry in entries)}")
    return found[0]


def build_target(report: dict[str, Any], manifest: dict[str, Any], name: str | None = None):
    """A target the build was made for (default: the lead): its own file when that still exists, else the
    built-in name."""
    from edgekit import targets

    chosen = target_entry(report, name)["target"]
    path = next((t.get("file") for t in manifest.get("targets", []) if t.get("name") == chosen), None)
    return targets.load(Path(path) if path and Path(path).is_file() else chosen)


def pick_variant(report: dict[str, Any], manifest: dict[str, Any], result: dict[str, Any],
                 name: str | None = None, target: str | None = None) -> tuple[dict[str, Any], str]:
    """The build variant the result measured, as judged on `target` (default: the lead), and how it was
    matched."""
    entry = target_entry(report, target)
    variants = entry["variants"]
    if name:
        found = [v for v in variants if v["name"] == name]
        if not found:
            raise UsageError(f"no variant '{name}' in the build; valid: {', '.join(v['name'] for v in variants)}")
        return found[0], "--variant"
    files = manifest.get("files", {})
    if result.get("sha256"):
        found = [v for v in variants if files.get(v["file"], {}).get("sha256") == result["sha256"]]
        if found:
            return found[0], "sha256 of the model file"
    if result.get("model"):
        found = [v for v in variants if v["file"] == result["model"]]
        if found:
            return found[0], "model file name"
    selected = next(v for v in variants if v["name"] == entry["selected"])
    if result.get("sha256") or result.get("model"):
        raise UsageError(f"the result measured '{result.get('model')}', which is none of the build's variants "
                         f"({', '.join(v['file'] for v in variants)}); say which with --variant")
    return selected, "the build's selected variant (the result does not name its model; --variant overrides)"


def compare(build_dir: Path, result_path: Path, variant_name: str | None = None,
            target_name: str | None = None, calibrate: Path | None = None, force: bool = False,
            inputs: Sequence[InputSpec] = ()) -> dict[str, Any]:
    """Estimate vs measured for the variant the result measured, on the target it ran on (`target_name`, one
    the build was made for; default: the lead target): latency and memory, with the error, and whether the
    measurement lies in the figure's band (low_ms..high_ms). A cost-model estimate is made again from the file
    and the profile; an emulated figure is the build's own. `calibrate`: also
    write there a copy of that target's profile, refitted (`refit`) so that its estimate for this model is the
    measurement. A result that cannot be the target's (`mismatches`) is refused, unless `force`, which marks the
    comparison; `calibrate` never refits from one. `inputs`: as `load_build` takes them."""
    from edgekit.estimate import estimate_latency
    from edgekit.model_info import inspect_model

    report, manifest = load_build(build_dir, inputs)
    result = read_result(result_path)
    if target_name is None:  # a build for several targets: the first the result can belong to, else the lead
        target_name = next((entry["target"] for entry in report["targets"]
                            if not mismatches(result, build_target(report, manifest, entry["target"]))), None)
    target = build_target(report, manifest, target_name)
    variant, matched = pick_variant(report, manifest, result, variant_name, target_name)
    model_path = Path(build_dir) / variant["file"]
    if model_path.is_file():
        from edgekit.validate import check_model_file

        check_model_file(model_path)  # a build folder can be copied about; say plainly if a model was damaged
    problems = mismatches(result, target)
    if problems and (calibrate is not None or not force):
        what = "--calibrate refits only from a measurement of the target itself" if force else \
            "--force compares anyway, marked"
        raise UsageError(f"{Path(result_path).name} cannot be a measurement of {target.name}: "
                         f"{'; '.join(problems)} ({what})")
    stored = variant.get("target_latency")
    latency = None  # an emulated figure (counted on the emulated core) stands as the build stored it
    if model_path.is_file() and not (stored and latency_text.basis(stored) == latency_text.EMULATED):
        latency = estimate_latency(inspect_model(model_path), target, variant["precision"])
    estimate: dict[str, Any] | None = at_threads(latency.to_dict() if latency else stored, result.get("threads"))
    measured = result["latency_ms"]
    rows = []
    if estimate:
        error = estimate["ms"] / measured - 1
        counted = f", {estimate['instructions']:,} instructions" if estimate.get("instructions") else ""
        rows.append({"figure": "latency",
                     "estimate": f"{estimate['ms']:.3g} ms {latency_text.basis(estimate)} ("
                                 f"{count_text(estimate['threads'], 'thread')}{counted})",
                     "measured": f"{measured:.3g} ms {result['statistic']} ({_threads(result.get('threads'))})",
                     "error": f"{error:+.0%}", "within": "yes" if latency_text.within(estimate, measured) else "no",
                     "expected": f"{latency_text.band(estimate)}: "
                                 f"{estimate['low_ms']:.3g}-{estimate['high_ms']:.3g} ms"})
    else:
        error = None
        rows.append({"figure": "latency", "estimate": "-", "measured": f"{measured:.3g} ms", "error": "-",
                     "within": "-", "expected": "-"})
    ram_figures = variant.get("ram", {})
    ram, host = ram_figures.get("required_bytes"), ram_figures.get("arena_host_bytes")
    memory = result.get("memory_bytes")
    memory_error = ram / memory - 1 if ram and memory else None
    what = ("emulated 32-bit arena" + (f"; {size_text(host)} on the host" if host else "")
            if ram_figures.get("basis") == latency_text.EMULATED else "host-measured")
    rows.append({"figure": "memory", "estimate": "-" if ram is None else f"{size_text(ram)} ({what})",
                 "measured": "-" if memory is None else f"{size_text(memory)} ({result['memory_what']})",
                 "error": "-" if memory_error is None else f"{memory_error:+.0%}", "within": "-", "expected": "-"})
    comparison = {"build": str(build_dir), "target": target.name, "variant": variant["name"], "file": variant["file"],
                  "precision": variant["precision"], "matched_by": matched, "result": result, "estimate": estimate,
                  "latency_error": error, "memory_error": memory_error, "rows": rows,
                  "model_path": str(model_path), "forced": problems or None}
    if calibrate is not None:
        from edgekit._files import write_atomic

        write_atomic(calibrate, refit(target, inspect_model(model_path), measured, precision=variant["precision"],
                                      model_name=variant["file"], result_file=Path(result_path).name,
                                      threads=result.get("threads"), runtime=f"{result['runtime']} ({result['kind']})",
                                      measured_on=measured_on(result, Path(result_path))))
        comparison["calibrated_profile"] = str(calibrate)
    return comparison


COLUMNS = ("figure", "estimate", "measured", "error (estimate / measured - 1)", "within its band")


def text(comparison: dict[str, Any]) -> tuple[str, list[tuple[Any, ...]], list[str]]:
    """What `edgekit compare` prints: the table's title, its rows (COLUMNS), and the lines after it."""
    measured = comparison["result"]
    where = ", ".join(str(v) for v in (measured.get("device"), measured.get("os"), measured.get("runtime")) if v)
    title = (f"{comparison['file']} ({comparison['variant']}) on {comparison['target']}: estimate vs "
             f"{measured['kind']} ({where or 'device not named'})")
    rows = [(r["figure"], r["estimate"], r["measured"], r["error"],
             r["within"] if r["expected"] == "-" else f"{r['within']} ({r['expected']})") for r in comparison["rows"]]
    lines = [f"Matched to variant {comparison['variant']} by {comparison['matched_by']}."]
    if comparison.get("forced"):
        lines.append(f"Forced (--force): {'; '.join(comparison['forced'])}. The figures above compare different "
                     "things.")
    if "calibrated_profile" in comparison:
        profile = comparison["calibrated_profile"]
        lines.append(f"Refitted profile: {profile} (use it with --target {profile})")
    return title, rows, lines


# --- Refit: a copy of the target profile whose cost model gives the measurement ------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_VALUE = re.compile(r"^(\s*)([A-Za-z0-9_\-]+)(\s*=\s*)([-+0-9.eE_]+)(.*)$")


def _rate_table(model, table: str) -> dict[str, float]:
    """The MACs-per-cycle rates a `[latency.<precision>]` or `[latency.<precision>.fallback]` header holds."""
    parts = table.split(".")
    if parts[0] != "latency" or len(parts) not in (2, 3) or len(parts) == 3 and parts[2] != "fallback":
        return {}
    return (model.macs_per_cycle if len(parts) == 2 else model.fallback).get(parts[1], {})


def measured_on(result: dict[str, Any], path: Path) -> str:
    """`Raspberry Pi 4 Model B Rev 1.5 (aarch64, Linux 6.6), 2026-12-03T10:00:00Z, edgekit 0.9`: where and when a
    result was measured (the file's time where the result has none), and by which edgekit it is compared."""
    import time

    from edgekit import __version__

    where = ", ".join(str(v) for v in (result.get("machine"), result.get("os")) if v)
    when = result.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ (file time)", time.gmtime(path.stat().st_mtime))
    device = result.get("device") or "device not named"
    return f"{device}{f' ({where})' if where else ''}, {when}, edgekit {__version__}"


def refit(target, model_info, measured_ms: float, *, precision: str, model_name: str = "measured model",
          result_file: str = "", threads: int | None = None, runtime: str = "", measured_on: str = "") -> str:
    """The text of a copy of `target`'s profile whose `[latency]` constants are scaled so that the estimate
    for `model_info` equals `measured_ms`, with the measurement recorded as a `[[latency.calibration]]` point.

    Every rate (MACs per cycle for each precision and op kind, fallback rates included, bytes per cycle) is
    multiplied by estimate / measured and the per-op overhead divided by it: the device is taken to be
    uniformly that much faster or slower than the profile said, which keeps the profile's op-kind ratios."""
    from edgekit.estimate import estimate_latency

    if target.latency is None:
        raise UsageError(f"target '{target.name}' ({target.file}) has no [latency] table to refit")
    if not measured_ms > 0:
        raise UsageError(f"measured latency must be > 0 ms, got {measured_ms!r}")
    estimate = estimate_latency(model_info, target, precision)
    if estimate is None:
        raise UsageError(f"target '{target.name}' has no latency constants for {precision}")
    factor = estimate.ms / measured_ms
    scaled = {"bytes_per_cycle": target.latency.bytes_per_cycle * factor,
              "op_overhead_cycles": target.latency.op_overhead_cycles / factor}
    lines, table = [], ""
    source = Path(target.file).read_text()
    # an emulated core whose profile only implies it (a Cortex-A core named, no emulated_as line): say it outright
    insert_emulated = target.cpu.emulated_as and not re.search(r"^\s*emulated_as\s*=", source, re.M)
    for line in source.splitlines():
        if header := _HEADER.match(line):
            table = header.group(1)
            if table == "cpu" and insert_emulated:
                lines.append(line)
                line = 'emulated_as = "none"  # added by edgekit compare: keep the refitted cost model'
        elif value := _VALUE.match(line):
            indent, key, equals, _, _ = value.groups()
            new = None
            if table == "latency" and key in scaled:
                new = scaled[key]
            elif key in (rates := _rate_table(target.latency, table)):
                new = rates[key] * factor
            if new is not None:
                how = f"/{factor:.4g}" if key == "op_overhead_cycles" else f"x{factor:.4g}"
                line = f"{indent}{key}{equals}{new:.9g}  # refitted by edgekit compare ({how} of {target.name}'s)"
        if table == "cpu" and re.match(r"^emulated_as\s*=", line):
            line = (f'emulated_as = "none"  # refitted by edgekit compare: this copy keeps its cost model, calibrated '
                    f"on your measurement, instead of the emulated {target.cpu.emulated_as}")
        if table == "" and re.match(r"^name\s*=", line):
            line = f'name = "{target.name}-calibrated"  # a refitted copy of {target.name}'
        elif table == "" and re.match(r"^title\s*=", line):
            line = f"title = {json.dumps(target.title + ' (calibrated by edgekit compare)')}"
        elif table == "latency" and re.match(r"^threads\s*=", line) and threads:
            line = f"threads = {threads}  # the thread count of the measurement this copy was refitted to"
        elif table == "latency" and re.match(r"^runtime\s*=", line) and runtime:
            counted = count_text(threads or target.latency.threads, "thread")
            line = f"runtime = {json.dumps(f'{runtime}, {counted}')}"
        elif table == "latency" and re.match(r"^method\s*=", line):
            line = "method = " + json.dumps(
                f"{target.latency.method} Refitted by edgekit compare: every rate x{factor:.4g} and the per-op "
                f"overhead / {factor:.4g}, so that the estimate for {model_name} "
                f"equals the {measured_ms:.4g} ms measured" + (f" on {measured_on}." if measured_on else "."))
        lines.append(line)
    shape = list(model_info.inputs[0].shape[1:]) if model_info.inputs else [1]
    point = [
        "", "# The measurement this copy was refitted to (model: the measured file, not a zoo builder).",
        "[[latency.calibration]]",
        f"model = {json.dumps(model_name)}",
        f"input = {json.dumps(shape)}",
        f"macs = {max(1, model_info.macs)}",
        f'precision = "{"float32" if precision == "float16" else precision}"',
        f"published_ms = {measured_ms:.9g}",
        f"runtime = {json.dumps(runtime or 'measured on the device')}",
        "source = " + json.dumps(f"edgekit compare {result_file}".strip()
                                 + (f": {measured_on}" if measured_on else "")),
    ]
    text = "\n".join(lines + point) + "\n"
    _check_refit(text, target, model_info, precision, measured_ms)
    return text


def _check_refit(text: str, target, model_info, precision: str, measured_ms: float) -> None:
    """The written profile must load and give the measurement; a profile laid out in a way the line edits
    above miss (inline tables) is an error, not a silently unrefitted copy."""
    import tempfile

    from edgekit import targets
    from edgekit.estimate import estimate_latency

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "refit.toml"
        path.write_text(text)
        refitted = targets.load(path)
    estimate = estimate_latency(model_info, refitted, precision)
    if estimate is None:
        raise UsageError(f"{target.file}: its refitted copy has no latency constants for {precision}; write the "
                         f"tables one key a line")
    ms = estimate.ms
    if abs(ms / measured_ms - 1) > 1e-3:
        raise UsageError(f"{target.file}: could not refit its [latency] table line by line (estimate {ms:.4g} ms "
                         f"after refitting, measured {measured_ms:.4g} ms); write the tables one key a line")
