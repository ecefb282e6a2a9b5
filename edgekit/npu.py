"""Arm Ethos-U NPU targets: the int8 model compiled with Arm's Vela compiler (`ethos-u-vela`, the `npu` extra).

Vela maps each operator it can onto the NPU and leaves the rest to the CPU beside it (a TFLite Micro kernel on the
Cortex-M, LiteRT on a Cortex-A). It writes the compiled model (`*_vela.tflite`, the NPU's command stream in one custom
operator plus the CPU operators) and a summary CSV: the NPU cycles of one inference by its performance model, and the
SRAM, DRAM and flash the compiled model uses. Those figures are Vela's estimate, never a measurement, and are labelled
so with Vela's version. An operator Vela cannot place on the NPU is reported with Vela's own reason, one per operator;
it is not a failure: its time on the CPU is added from the CPU figures edgekit already has for the target (counted on
the emulated core where there is one), and both parts are shown.

Vela runs in a child process under a timeout (it is a compiler that can crash or hang on an odd graph), and its
output is cached on disk (EDGEKIT_CACHE_DIR/vela) by the model's sha256 and the NPU configuration.
"""

from __future__ import annotations

import configparser
import csv
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekit._files import write_atomic
from edgekit.errors import StageError
from edgekit.targets import Npu, Target
from edgekit.units import count_text

log = logging.getLogger("edgekit")
PACKAGE = "ethos-u-vela"
PINNED = "5.2.0"  # pyproject's [npu] extra
TIMEOUT_S = 300.0
INSTALL_HINT = f"install the npu extra: pip install 'edgekit[npu]' (it pins {PACKAGE}=={PINNED})"
_SECTION = "System_Config.edgekit"  # the profile's system configuration at the profile's NPU clock
# Vela 5.2 names each operator it leaves on the CPU, and why, in one of two shapes (its two back ends)
_WARNING = re.compile(r"Warning \(supported operators\) operator: (?P<op>\w+), ofm: '(?P<name>[^']*)'\s*\n"
                      r"\s*Reason: (?P<reason>[^\n]+)")
_LEGACY = re.compile(r"Warning: Unsupported TensorFlow Lite semantics for (?P<op>\w+) '(?P<name>[^']*)'\. "
                     r"Placing on CPU instead\s*\n\s*-\s*(?P<reason>[^\n]+)")
_COUNT = re.compile(r"^(CPU|NPU) operators = (\d+)", re.MULTILINE)
_CPU_OP = re.compile(r"^\s*CPU: (\w+) = (.+?)(?: \(outputs \[[^\]]*\]\))?$", re.MULTILINE)


@dataclass(frozen=True)
class CpuOp:
    """One operator of the source file that Vela leaves on the CPU."""

    name: str  # its output tensor (Vela names an operator by it)
    op: str  # the TFLite operator, e.g. 'L2_NORMALIZATION'
    reason: str  # Vela's reason, as Vela wrote it
    index: int | None  # the operator's position in the source file; None when Vela's name matches none


@dataclass(frozen=True)
class VelaResult:
    """What Vela says of one model on one NPU configuration: its performance estimate and memory use."""

    vela_version: str
    accelerator: str
    system_config: str
    memory_mode: str
    clock_mhz: float
    cycles_npu: int  # the NPU's compute cycles of one inference (Vela's cycles_npu)
    cycles_total: int  # with the memory accesses it waits for (Vela's cycles_total): the figure timed
    sram_bytes: int  # SRAM Vela allocates (the tensor arena in Shared_Sram, the cache in Dedicated_Sram)
    dram_bytes: int
    flash_bytes: int  # off-chip plus on-chip flash Vela uses (weights and command stream)
    npu_ops: int  # operators on the NPU, as Vela counts them after its graph rewrite
    cpu_ops: tuple[CpuOp, ...]
    model_bytes: int  # the compiled model file
    model_sha256: str
    model_path: str  # the compiled model in edgekit's cache

    @property
    def npu_ms(self) -> float:
        return self.cycles_total / (self.clock_mhz * 1e3)

    @property
    def label(self) -> str:
        return (f"Vela's performance estimate (ethos-u-vela {self.vela_version}, {self.accelerator}, "
                f"{self.system_config} at {self.clock_mhz:g} MHz, {self.memory_mode}): computed by Vela's "
                "performance model, not measured")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model_path")
        return {**data, "npu_ms": self.npu_ms, "label": self.label}


def vela_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def compile_model(path: Path, npu: Npu) -> VelaResult:
    """The model compiled by Vela for `npu` (cached). StageError (one line) when Vela is missing, fails or hangs."""
    from edgekit.toolchains.sources import cache_root

    version = vela_version()
    if version is None:
        raise StageError("npu", f"Vela is not installed: {INSTALL_HINT}")
    data = Path(path).read_bytes()
    key = hashlib.sha256(json.dumps([hashlib.sha256(data).hexdigest(), asdict(npu), version]).encode()).hexdigest()
    folder = cache_root() / "vela" / key[:24]
    record = folder / "result.json"
    if record.is_file():
        values = json.loads(record.read_text())
        if Path(values["model_path"]).is_file():
            return _result(values)
    with tempfile.TemporaryDirectory(prefix="edgekit-vela-") as scratch:
        work = Path(scratch)
        (work / "model.tflite").write_bytes(data)
        output = _run(work, npu, Path(path).name)
        compiled = work / "out" / "model_vela.tflite"
        summary = next((work / "out").glob("model_summary_*.csv"), None)
        if not compiled.is_file() or summary is None:
            raise StageError("npu", f"{Path(path).name}: Vela wrote no compiled model or summary "
                                    f"({_last_line(output)})")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(compiled, folder / "model_vela.tflite.part")
        os.replace(folder / "model_vela.tflite.part", folder / "model_vela.tflite")
        with open(summary, newline="") as f:
            row = next(csv.DictReader(f))
    compiled_bytes = (folder / "model_vela.tflite").read_bytes()
    values = {
        "vela_version": version, "accelerator": npu.accelerator, "system_config": npu.system_config,
        "memory_mode": npu.memory_mode, "clock_mhz": npu.clock_mhz,
        "cycles_npu": int(float(row["cycles_npu"])), "cycles_total": int(float(row["cycles_total"])),
        "sram_bytes": _kib(row["sram_memory_used"]), "dram_bytes": _kib(row["dram_memory_used"]),
        "flash_bytes": _kib(row["off_chip_flash_memory_used"]) + _kib(row["on_chip_flash_memory_used"]),
        "npu_ops": _count(output, "NPU"), "cpu_ops": [asdict(op) for op in cpu_operators(output, data)],
        "model_bytes": len(compiled_bytes), "model_sha256": hashlib.sha256(compiled_bytes).hexdigest(),
        "model_path": str(folder / "model_vela.tflite"),
    }
    record.write_text(json.dumps(values))
    return _result(values)


def _result(values: dict[str, Any]) -> VelaResult:
    return VelaResult(**{**values, "cpu_ops": tuple(CpuOp(**op) for op in values["cpu_ops"])})


def _run(work: Path, npu: Npu, model: str) -> str:
    """Vela's command line in a child process group of its own, so that a timeout ends all of it."""
    command = [sys.executable, "-m", "ethosu.vela", "model.tflite", "--output-dir", "out",
               "--accelerator-config", npu.accelerator, "--config", str(_config(work, npu)),
               "--system-config", _SECTION.split(".", 1)[1], "--memory-mode", npu.memory_mode,
               "--show-cpu-operations"]
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise StageError("npu", f"{model}: no result from Vela within {TIMEOUT_S:g} s ({npu.accelerator})") from None
    if process.returncode != 0:
        ended = f"crashed ({signal.Signals(-process.returncode).name})" if process.returncode < 0 else \
            f"exited with status {process.returncode}"
        raise StageError("npu", f"{model}: Vela {ended} compiling for {npu.accelerator}: {_last_line(output)}")
    return output


def _config(work: Path, npu: Npu) -> Path:
    """Arm's vela.ini with one system configuration added: the profile's, at the profile's NPU clock (Vela's
    memory model counts the memories' latencies in NPU cycles, so the clock changes the cycles too)."""
    from importlib.util import find_spec

    spec = find_spec("ethosu.vela")  # ethosu is a namespace package: its folder is the vela package's parent
    if spec is None or spec.origin is None:
        raise StageError("npu", f"Vela is not installed: {INSTALL_HINT}")
    arm = Path(spec.origin).resolve().parents[1] / "config_files" / "Arm" / "vela.ini"
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # Vela's keys are case-sensitive
    parser.read(arm)
    source = f"System_Config.{npu.system_config}"
    if not parser.has_section(source):
        systems = sorted(s.split(".", 1)[1] for s in parser.sections() if s.startswith("System_Config."))
        raise StageError("npu", f"npu.system_config '{npu.system_config}' is not in Vela's vela.ini; valid: "
                                f"{', '.join(systems)}")
    if not parser.has_section(f"Memory_Mode.{npu.memory_mode}"):
        modes = sorted(s.split(".", 1)[1] for s in parser.sections() if s.startswith("Memory_Mode."))
        raise StageError("npu", f"npu.memory_mode '{npu.memory_mode}' is not in Vela's vela.ini; valid: "
                                f"{', '.join(modes)}")
    parser[_SECTION] = {**parser[source], "core_clock": f"{npu.clock_mhz * 1e6:.6g}"}
    path = work / "edgekit-vela.ini"
    with open(path, "w") as f:
        parser.write(f)
    return path


def cpu_operators(output: str, model: bytes) -> list[CpuOp]:
    """Every operator Vela's output lists on the CPU, with Vela's reason and the operator's index in `model`."""
    reasons = {m["name"]: (m["op"], m["reason"].strip()) for pattern in (_WARNING, _LEGACY)
               for m in pattern.finditer(output)}
    indexes = _output_names(model)
    found, seen = [], set()
    for vela_op, name in _CPU_OP.findall(output):
        if name in seen:
            continue
        seen.add(name)
        op, reason = reasons.get(name, (None, "Vela gave no reason"))
        index = indexes.get(name)
        found.append(CpuOp(name=name, op=op or (index[1] if index else vela_op), reason=reason,
                           index=index[0] if index else None))
    return found


def _output_names(model: bytes) -> dict[str, tuple[int, str]]:
    """output tensor name -> (operator index, operator name) in the source file's first subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    from edgekit.model_info import _tflite_op_name

    parsed = schema.ModelT.InitFromPackedBuf(model, 0)
    graph = parsed.subgraphs[0]
    names = {}
    for index, operator in enumerate(graph.operators):
        op = _tflite_op_name(parsed.operatorCodes[operator.opcodeIndex])
        for tensor in operator.outputs:
            name = graph.tensors[tensor].name
            names[name.decode() if isinstance(name, bytes) else name] = (index, op)
    return names


def _count(output: str, unit: str) -> int:
    return next((int(n) for kind, n in _COUNT.findall(output) if kind == unit), 0)


def _kib(text: str) -> int:
    return round(float(text) * 1024)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def judge(path: Path, info, target: Target, precision: str, ram: dict[str, Any], ops: dict[str, Any], estimate):
    """(ram, ops, latency, flash_bytes, npu) for an NPU target; the CPU figures as given (and npu saying why) where
    Vela does not apply (a float model) or could not run. The latency is `combined_latency`'s."""
    assert target.npu is not None
    if precision not in ("int8", "int16x8"):
        return ram, ops, estimate, info.size_bytes, {
            "compiled": False, "reason": f"Vela compiles quantized models; this file is {precision}, so it runs on "
                                         f"the {target.cpu.core} alone"}
    try:
        result = compile_model(path, target.npu)
    except StageError as failure:
        log.warning("%s: %s; the CPU figures stand", target.name, failure)
        return ram, ops, estimate, info.size_bytes, {"compiled": False, "reason": str(failure)}
    for op in result.cpu_ops:
        log.info("%s: Vela leaves %s '%s' on the %s: %s", target.name, op.op, op.name, target.cpu.core, op.reason)
    latency, cpu_part = combined_latency(result, target, precision, estimate, _counted_apart(path, result, target,
                                                                                           precision, estimate))
    memory = result.sram_bytes + result.dram_bytes
    npu_ram = {"required_bytes": memory, "sram_bytes": result.sram_bytes, "dram_bytes": result.dram_bytes,
               "basis": "Vela", "cpu_arena_bytes": ram.get("required_bytes"),
               "method": f"the SRAM and DRAM Vela allocates for the compiled model ({result.memory_mode}): "
                         f"{result.label}"}
    on_npu = len(info.ops) - len({op.index for op in result.cpu_ops if op.index is not None})
    npu_ops = {**ops, "npu": f"{on_npu} of {len(info.ops)} operators of the file on the {result.accelerator} "
                             f"({result.npu_ops} NPU operations after Vela's rewrite)"}
    figures = {"compiled": True, **result.to_dict(), "source_ops": len(info.ops), "source_ops_on_npu": on_npu,
               "cpu_part": cpu_part}
    return npu_ram, npu_ops, latency, result.model_bytes, figures


def combined_latency(result: VelaResult, target: Target, precision: str, estimate, apart=None):
    """The target latency: Vela's NPU estimate plus the time of the operators Vela leaves on the CPU, both said: their
    share of the CPU figure edgekit has for the target where it has one per operator (counted on the emulated
    Cortex-M, else the profile's cost model), else `apart` (the CPU operators counted alone, `_counted_apart`).
    Returns (LatencyEstimate, the CPU part as a dict)."""
    from edgekit.estimate import LatencyEstimate

    on_cpu = {op.index for op in result.cpu_ops}
    npu_text = (f"{result.label}: {result.cycles_total:,} cycles at {result.clock_mhz:g} MHz = "
                f"{result.npu_ms:.4g} ms on the NPU")
    per_op: tuple = ()
    figure: LatencyEstimate | None = None  # the CPU figure the CPU part is taken from
    why: str | None = None  # or why there is none
    share, how = 1.0, ""
    if not result.cpu_ops:
        cpu_ms, low, high, cpu = 0.0, 0.0, 0.0, {"ms": 0.0, "ops": 0, "basis": None, "method": "no operator on the CPU"}
    elif None in on_cpu:
        why = "an operator Vela names matches none of the file"
    elif estimate is not None and estimate.per_op:
        figure, per_op = estimate, tuple(op for op in estimate.per_op if op.index in on_cpu)
        share = sum(op.ms for op in per_op) / estimate.ms
        how = f"the CPU operators' share of the {target.cpu.core} figure ({estimate.basis}, {estimate.band})"
    elif isinstance(apart, LatencyEstimate):
        figure = apart
        how = ("the CPU operators cut from the file into a model of their own, fed zeros (as bench feeds an input it "
               "has no data for)")
    else:
        why = apart or f"edgekit has no per-operator figure for the {target.cpu.core}"
    if figure is not None:
        cpu_ms, low, high = figure.ms * share, figure.low_ms * share, figure.high_ms * share
        cpu = {"ms": cpu_ms, "ops": len(result.cpu_ops), "basis": figure.basis, "band": figure.band,
               "method": f"{how}: {figure.method}"}
    elif why is not None:
        cpu_ms, low, high = 0.0, 0.0, 0.0
        cpu = {"ms": None, "ops": len(result.cpu_ops), "basis": None, "method": f"not counted: {why}"}
    left = f"{count_text(len(result.cpu_ops), 'operator')} Vela leaves on the {target.cpu.core}"
    text = npu_text if not result.cpu_ops else (
        f"{npu_text}; plus {cpu_ms:.4g} ms for the {left} ({cpu['method']})" if cpu["ms"] is not None else
        f"{npu_text}; the {left} {'is' if len(result.cpu_ops) == 1 else 'are'} {cpu['method']}, so this is a lower "
        "bound")
    latency = LatencyEstimate(
        ms=result.npu_ms + cpu_ms, low_ms=result.npu_ms + low, high_ms=result.npu_ms + high, precision=precision,
        threads=1, runtime=f"{result.accelerator} (Vela {result.vela_version}) + {target.runtime.value} on the "
                           f"{target.cpu.core}",
        expected_error=0.0, per_op=per_op, basis="estimated",
        method=f"{text}. Vela states no error band for its estimate; the low and high figures cover the CPU part's "
               "band only",
        instructions=(sum(op.instructions or 0 for op in per_op) if per_op else
                      figure.instructions if figure is not None else None) or None)
    return latency, cpu


def _counted_apart(path: Path, result: VelaResult, target: Target, precision: str, estimate):
    """The operators Vela leaves on a Cortex-A, counted alone: cut from the file into a model of their own (`cut`) and
    run in LiteRT's aarch64 build on the emulated core, fed as `edgekit bench` feeds a model (edgekit.feeds) and
    timed as a whole model is (cycles_a64). None where there is nothing to count apart (no operator left on the CPU,
    one Vela names that the file lacks, a CPU figure per operator already, a core edgekit does not emulate); a string
    saying why, where the emulator could not count them."""
    indexes = [op.index for op in result.cpu_ops]
    if not indexes or None in indexes or (estimate is not None and estimate.per_op) or target.cpu.emulated_as is None:
        return None
    from edgekit import feeds
    from edgekit.cycles_a64 import litert_latency
    from edgekit.runtimes import emulated_a64

    if (reason := emulated_a64.unavailable()) is not None:
        return reason
    with tempfile.TemporaryDirectory(prefix="edgekit-cpu-ops-") as scratch:
        part = Path(scratch) / f"{Path(path).stem}_cpu_ops.tflite"
        part.write_bytes(cut(Path(path).read_bytes(), [i for i in indexes if i is not None]))
        try:
            run = emulated_a64.counted_run(part, target.cpu.emulated_as, feeds.plan(part).values)
        except StageError as failure:
            return str(failure)
    return litert_latency(run, target, precision)


def cut(model: bytes, indexes: list[int]) -> bytes:
    """A model of the first subgraph's operators at `indexes` alone: its inputs are what they read that none of them
    writes and no constant holds, its outputs what they write that none of them reads."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(model, 0)
    graph = parsed.subgraphs[0]
    kept = [graph.operators[i] for i in sorted(indexes)]
    written = {t for op in kept for t in op.outputs}
    read = {t for op in kept for t in op.inputs if t >= 0}

    def constant(tensor: int) -> bool:
        buffer = parsed.buffers[graph.tensors[tensor].buffer]
        return buffer.data is not None and len(buffer.data) > 0 or bool(buffer.size)

    graph.operators = kept
    outputs = set(graph.outputs)
    graph.inputs = list(dict.fromkeys(t for op in kept for t in op.inputs
                                      if t >= 0 and t not in written and not constant(t)))
    graph.outputs = [t for op in kept for t in op.outputs if t not in read or t in outputs]
    parsed.subgraphs = [graph]
    parsed.signatureDefs = []
    builder = flatbuffers.Builder(len(model))
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_artifacts(directory: Path, result) -> list[str]:
    """A build's Vela-compiled models, one per NPU target and variant compiled, as files of the build folder
    (`vela/TARGET/VARIANT_vela.tflite`), the same bytes as the summary's sha256 says. Returns their names."""
    written = []
    for target_result in result.targets:
        if target_result.target.npu is None:
            continue
        for variant in target_result.variants:
            figures = variant.measured.npu
            if not figures or not figures.get("compiled"):
                continue
            compiled = compile_model(directory / variant.measured.file, target_result.target.npu)
            if compiled.model_sha256 != figures["model_sha256"]:
                raise StageError("npu", f"Vela compiled {variant.measured.file} for {target_result.name} into other "
                                        "bytes than the benchmark's (Vela is not deterministic here)")
            name = f"vela/{target_result.name}/{Path(variant.measured.file).stem}_vela.tflite"
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(directory / name, Path(compiled.model_path).read_bytes())
            written.append(name)
    return written
