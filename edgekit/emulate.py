"""`edgekit bench` on a microcontroller target whose core edgekit can emulate: run the bundle's program
on the emulated core (edgekit.runtimes.emulated) and take from it the figures a cost model would otherwise
guess: the latency (counted instructions x the core's fitted CPI, edgekit.cycles), the tensor arena the
32-bit allocator used with the core's kernels, and whether the op set runs at all (only if the program ran
it and its output bytes equal the host TFLite Micro runtime's).

Without the cross compiler or QEMU, one warning says what to install and the cost model's estimate stays,
labelled as such. A core edgekit cannot emulate (Xtensa) keeps its cost model without a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import StageError
from edgekit.estimate import LatencyEstimate
from edgekit.model_info import ModelInfo
from edgekit.targets import Target
from edgekit.toolchains.firmware import BoardTooSmall

log = logging.getLogger("edgekit")
ALIGNMENT = 16


class Emulations:
    """The emulated runs of one model file, one per core, made when a target first asks for its core."""

    def __init__(self, path: Path, info: ModelInfo, raw_sample: np.ndarray | None,
                 feeds: dict[str, np.ndarray] | None = None, state: Sequence[tuple[str, str]] = ()):
        """`raw_sample`: the one input of a model of one input, in its dtype, without the batch axis (None for a
        model of several: the Cortex-M programs feed one); `feeds` and `state`: every input by tensor name and
        the recurrent state pairs (edgekit.feeds.FeedPlan), which the Cortex-A runs take."""
        self.path, self.info, self.raw_sample = path, info, raw_sample
        self.feeds, self.state = feeds, tuple(state)
        self.runs: dict[str, Any] = {}
        self.warned: set[str] = set()

    def _warn(self, target: Target, reason: str) -> None:
        """One warning for each reason a target is not emulated (the first target that meets it named)."""
        if reason not in self.warned:
            log.warning("%s: %s", target.name, reason)
            self.warned.add(reason)

    def judge(self, target: Target, precision: str, host_output: Any, ram: dict[str, Any], ops: dict[str, Any],
              estimate: LatencyEstimate | None) -> tuple[dict[str, Any], dict[str, Any], LatencyEstimate | None]:
        """(ram, ops, latency) for `target`, from its core's emulated run when there is one; else as given."""
        from edgekit.cycles import emulated_latency
        from edgekit.runtimes import emulated
        from edgekit.runtimes.emulated import checked

        reason = emulated.unavailable(target)
        if reason:
            self._warn(target, reason)
            return ram, ops, self._fallback(target, precision, estimate, reason)
        core = emulated.core_for(target)
        if core is not None and self.raw_sample is None:  # a model of several inputs
            reason = (f"not emulated: the Cortex-M program feeds one input; the model has "
                      f"{len(self.feeds or {})}")
            self._warn(target, reason)
            return ram, ops, self._fallback(target, precision, estimate, reason)
        if core is None or host_output is None or self.raw_sample is None:
            return ram, ops, estimate
        if core.name not in self.runs:
            expected = np.asarray(host_output, dtype=np.dtype(self.info.outputs[0].dtype))
            try:
                self.runs[core.name] = emulated.run_model(self.path, core, self.raw_sample, expected)
            except (emulated.SetupFailed, BoardTooSmall, StageError) as failure:
                self.runs[core.name] = failure
        run = self.runs[core.name]
        if isinstance(run, StageError) and not isinstance(run, BoardTooSmall | emulated.SetupFailed):  # not built
            self._warn(target, f"not emulated: {run.reason}")
            return ram, ops, self._fallback(target, precision, estimate, f"not emulated: {run.reason}")
        if isinstance(run, BoardTooSmall):
            return ram, ops, self._fallback(target, precision, estimate, f"not emulated: {run.reason}")
        if isinstance(run, emulated.SetupFailed):
            if "missing:" in run.log:  # the arena did not fit the emulated board: a limit of the board, not the device
                return ram, ops, self._fallback(target, precision, estimate, "not emulated: the tensor arena does "
                                                f"not fit the RAM of QEMU's {core.board} ({run.log.strip()[:160]})")
            return ram, {**ops, "supported": False, "checked_with": f"tflite-micro on an emulated {core.name}",
                         "detail": f"the bundle's program did not set the model up on an emulated {core.name}: "
                                   f"{run.log.strip() or run.reason}"}, estimate
        checked(run, self.path)
        arena = math.ceil(run.arena_bytes / ALIGNMENT) * ALIGNMENT
        ram = {**ram, "arena_host_bytes": ram.get("arena_min_bytes") or ram.get("arena_bytes"),
               "arena_bytes": run.arena_bytes, "required_bytes": arena, "margin": 0.0, "basis": "emulated",
               "method": f"the arena TFLite Micro used (arena_used_bytes()) running the bundle's program on an "
                         f"emulated {core.name} (32-bit, CMSIS-NN kernels), rounded up to 16 bytes; no margin. "
                         "Kernels' temporary buffers while preparing are not in that figure: the smallest arena that "
                         "loads can be larger (a small dense model used 1,108 B and first loaded at 1,408 B); "
                         "`edgekit export` searches for it and writes it to model_arena.h"}
        ops = {**ops, "checked_with": f"tflite-micro on an emulated {core.name}",
               "detail": f"the bundle's program ran it on an emulated {core.name}, " + (
                   "output bytes identical to the host TFLite Micro runtime's" if run.output_matches else
                   f"float output within {emulated.FLOAT_RTOL:g} of the host TFLite Micro runtime's (largest "
                   f"difference {run.output_max_diff:.2g})")}
        return ram, ops, emulated_latency(run, self.info, target, precision)


    def judge_litert(self, target: Target, precision: str, host_output: np.ndarray, ram: dict[str, Any],
                     ops: dict[str, Any], estimate: LatencyEstimate | None
                     ) -> tuple[dict[str, Any], dict[str, Any], LatencyEstimate | None]:
        """(ram, ops, latency) for a LiteRT target whose core edgekit emulates: the model in LiteRT's aarch64 build
        on the emulated Cortex-A core (counted with one thread, timed for the target's threads); else as given."""
        from edgekit.cycles_a64 import litert_latency
        from edgekit.errors import StageError
        from edgekit.runtimes import emulated_a64

        core = target.cpu.emulated_as
        if core is None:
            return ram, ops, estimate
        reason = emulated_a64.unavailable()
        if reason is None and core not in self.runs:
            try:
                given = self.feeds if self.raw_sample is None or self.state else self.raw_sample
                assert given is not None
                self.runs[core] = emulated_a64.counted_run(self.path, core, given, state=self.state)
            except StageError as failure:
                self.runs[core] = failure
        run = self.runs.get(core)
        if reason or not isinstance(run, emulated_a64.LiteRTRun):
            reason = reason or f"not emulated: {run}"
            self._warn(target, reason)
            return ram, ops, self._fallback(target, precision, estimate, reason)
        comparison = emulated_a64.compare(run, host_output)
        ops = {**ops, "checked_with": f"litert on an emulated {core}",
               "detail": f"ran in LiteRT's aarch64 build on an emulated {core}, {comparison}"}
        return {**ram, **emulated_a64.memory_figures(run)}, ops, litert_latency(run, target, precision)

    def _fallback(self, target: Target, precision: str, estimate: LatencyEstimate | None,
                  reason: str) -> LatencyEstimate | None:
        """The profile's own cost model when it has one, else the estimate from the CPI fit's instruction
        rates; either way labelled with why the core was not emulated."""
        from dataclasses import replace

        from edgekit.cycles import estimate_without_emulator
        from edgekit.runtimes.emulated import emulable_core

        if estimate is not None:
            return replace(estimate, method=f"{reason}. {estimate.method}")
        core = emulable_core(target)
        if core is None:
            log.info("%s: no latency estimate: %s, and the profile has no [latency] cost model", target.name, reason)
        return estimate_without_emulator(self.info, target, precision, core.name, reason) if core else None
