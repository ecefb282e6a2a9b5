"""Fit the cycles per instruction (CPI) of the emulated Cortex-M cores on the published measurements of
calibration points, and derive it for cores that have none; writes edgekit/toolchains/cpi.json.

    python benchmarks/emulated_counts.py --cores Cortex-M4,Cortex-M7   # the instruction counts first
    python benchmarks/fit_cpi.py

Model, in log space, for a point p measured on core c with kernels of generation k:

    cycles_p = instructions_p (counted today, on the emulated core) x CPI_c x g_k

* The Nucleo-L4R5ZI points (MLPerf Tiny v0.5, Cortex-M4F, 2020 kernels) and the STM32H743 points (TinyEngine
  README, Cortex-M7, TFLM + CMSIS-NN of 2022) are the only ones fitted on.
* g_2022 = 1: the 2022 kernels are taken as today's (the assumption the band has to cover); g_2020 is fitted:
  the 2020 kernels executed more instructions than today's.
* The two cores share one parameter: CPI_M4 = CPI_M7 x (CoreMark/MHz M7 / M4), Arm's published figures,
  since both run the same Armv7E-M code and differ in the pipeline. So two parameters, seven points.
* The MCUNet models are not in the zoo: their points count the MLPerf VWW MobileNetV1 (a depthwise-
  separable net too) and scale its instructions by their MACs (a proxy, said so).
* The band is the largest leave-one-out residual (refit without the point, predict it), as a factor.
* Cores without points get the CPI of the fitted M4 scaled by Arm's CoreMark/MHz (and, for Helium cores,
  by the beats a 128-bit MVE instruction takes), a wider band, and the word "derived".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

COUNTS = Path(__file__).with_name("emulated_counts.json")
OUT = Path(__file__).parents[1] / "edgekit" / "toolchains" / "cpi.json"

# Arm's published CoreMark/MHz (Cortex-M product pages): the per-MHz speed of the same code on each core.
COREMARK_PER_MHZ = {"Cortex-M0+": 2.46, "Cortex-M3": 3.34, "Cortex-M4": 3.42, "Cortex-M7": 5.01,
                    "Cortex-M33": 4.02, "Cortex-M55": 4.2, "Cortex-M85": 6.28}
# Points: (core, counted model, MACs of the measured model (None: the counted one), published ms, clock MHz,
# kernel generation, source).
L4R5 = "MLPerf Tiny v0.5 reference submission, Nucleo-L4R5ZI (Cortex-M4F 120 MHz), TFLM 2.3.1 + CMSIS-NN (2020), " \
       "mlcommons/tiny_results_v0.5 closed/reference/results/Nucleo-L4R5ZI/"
H743 = "mit-han-lab/tinyengine README, STM32H743 (Cortex-M7 480 MHz), TFLM 713b6ed + CMSIS-NN 011bf32 (2022); " \
       "MACs from the mit-han-lab/mcunet model zoo; counted with the MLPerf VWW MobileNetV1 as proxy"
POINTS = [
    ("Cortex-M4", "kws ds-cnn", None, 181.92, 120, 2020, L4R5),
    ("Cortex-M4", "vww mobilenet-v1-0.25", None, 600.60, 120, 2020, L4R5),
    ("Cortex-M4", "ic resnet-8", None, 704.23, 120, 2020, L4R5),
    ("Cortex-M4", "ad fc-autoencoder", None, 10.05, 120, 2020, L4R5),
    ("Cortex-M7", "vww mobilenet-v1-0.25", 6.0e6, 53.0, 480, 2022, H743 + " (mcunet-vww0)"),
    ("Cortex-M7", "vww mobilenet-v1-0.25", 11.6e6, 97.0, 480, 2022, H743 + " (mcunet-vww1)"),
    ("Cortex-M7", "vww mobilenet-v1-0.25", 55.8e6, 478.0, 480, 2022, H743 + " (mcunet-vww2)"),
]
M4_PER_M7 = COREMARK_PER_MHZ["Cortex-M7"] / COREMARK_PER_MHZ["Cortex-M4"]  # CPI_M4 / CPI_M7
# Instructions per CoreMark iteration, Armv6-M (Thumb-1 only) over Armv7-M: edgekit's assumption, so that the
# CoreMark ratio is not counted twice for the M0+ (whose extra instructions are counted, not estimated).
V6M_INSTRUCTION_RATIO = 1.25
MVE_BEATS = {"Cortex-M55": 1.5, "Cortex-M85": 1.0}  # dual-beat M55: vector instructions take two cycles
DERIVED_WIDENING = 1.25  # a derived CPI's band: the fitted band times this


def observations(counts: dict) -> list[dict]:
    rows = []
    for core, model, macs, ms, mhz, generation, source in POINTS:
        counted = counts[model][core]
        instructions = counted["instructions"] * (macs / counted["macs"] if macs else 1.0)
        rows.append({"core": core, "model": model, "macs": macs or counted["macs"], "instructions": instructions,
                     "cycles": ms * mhz * 1e3, "generation": generation, "source": source, "published_ms": ms,
                     "clock_mhz": mhz})
    return rows


def fit(rows: list[dict]) -> tuple[float, float]:
    """(CPI_M7, g_2020), least squares in log space (closed form: two means)."""
    m7 = [math.log(r["cycles"] / r["instructions"]) for r in rows if r["core"] == "Cortex-M7"]
    m4 = [math.log(r["cycles"] / r["instructions"] / M4_PER_M7) for r in rows if r["core"] == "Cortex-M4"]
    log_cpi7 = float(np.mean(m7)) if m7 else float(np.mean(m4)) - math.log(1.35)
    generation = float(np.mean([v - log_cpi7 for v in m4])) if m4 else math.log(1.35)
    return math.exp(log_cpi7), math.exp(generation)


def predict(row: dict, cpi7: float, g2020: float) -> float:
    cpi = cpi7 * (M4_PER_M7 if row["core"] == "Cortex-M4" else 1.0)
    return row["instructions"] * cpi * (g2020 if row["generation"] == 2020 else 1.0)


MAC_KINDS = ("conv", "depthwise_conv", "dense")


def instruction_rates(references: list[dict]) -> dict:
    """Instructions per MAC by op kind and per byte for the other ops, over the references' per-op counts."""
    macs = {kind: sum(op["macs"] for r in references for op in r["per_op"] if op["kind"] == kind) for kind in MAC_KINDS}
    spent = {kind: sum(op["instructions"] for r in references for op in r["per_op"] if op["kind"] == kind)
             for kind in MAC_KINDS}
    other = [op for r in references for op in r["per_op"] if op["kind"] not in MAC_KINDS or not op["macs"]]
    return {"per_mac": {kind: spent[kind] / macs[kind] for kind in MAC_KINDS if macs[kind]},
            "per_byte": sum(op["instructions"] for op in other) / max(sum(op["bytes"] for op in other), 1)}


def predicted_instructions(reference: dict, rates: dict) -> float:
    return sum(op["macs"] * rates["per_mac"][op["kind"]] if op["kind"] in rates["per_mac"] and op["macs"]
               else op["bytes"] * rates["per_byte"] for op in reference["per_op"])


def instruction_model(counts: dict) -> dict:
    """Per core: the rates over all four references, and the band of the largest leave-one-out error (rates
    from three references predicting the fourth's total), for estimates made without the emulator."""
    models = {}
    for core in sorted({core for per_core in counts.values() for core in per_core}):
        references = [per_core[core] for per_core in counts.values() if core in per_core]
        errors = [predicted_instructions(r, instruction_rates([o for o in references if o is not r]))
                  / r["instructions"] for r in references]
        models[core] = {**instruction_rates(references),
                        "error_factor": math.exp(max(abs(math.log(e)) for e in errors))}
    return models


def main() -> None:
    counts = json.loads(COUNTS.read_text())
    rows = observations(counts)
    cpi7, g2020 = fit(rows)
    for i, row in enumerate(rows):
        rest = rows[:i] + rows[i + 1:]
        row["fit_residual"] = predict(row, cpi7, g2020) / row["cycles"] - 1
        row["loo_residual"] = predict(row, *fit(rest)) / row["cycles"] - 1
    band = math.exp(max(abs(math.log(1 + r["loo_residual"])) for r in rows))
    cpi4 = cpi7 * M4_PER_M7
    fitted = (f"fitted jointly with the Cortex-M7 on 7 published points (4 Nucleo-L4R5ZI MLPerf Tiny v0.5, 2020 "
              f"kernels, which executed {g2020:.2f}x today's instructions by the same fit; 3 STM32H743 TinyEngine "
              f"MCUNet points, 2022 kernels, MobileNetV1 as proxy), CPI_M4 = CPI_M7 x {M4_PER_M7:.3f} (CoreMark/MHz); "
              f"band: the largest leave-one-out residual")
    cores = {
        "Cortex-M4": {"cpi": cpi4, "error_factor": band, "basis": "fitted", "method": fitted},
        "Cortex-M7": {"cpi": cpi7, "error_factor": band, "basis": "fitted", "method": fitted},
    }
    for core in ("Cortex-M3", "Cortex-M33", "Cortex-M0+", "Cortex-M55", "Cortex-M85"):
        ratio = COREMARK_PER_MHZ["Cortex-M4"] / COREMARK_PER_MHZ[core]
        how = f"the fitted Cortex-M4 CPI x CoreMark/MHz M4 {COREMARK_PER_MHZ['Cortex-M4']} / {core} " \
              f"{COREMARK_PER_MHZ[core]}"
        if core == "Cortex-M0+":
            ratio /= V6M_INSTRUCTION_RATIO
            how += f" / {V6M_INSTRUCTION_RATIO} (Armv6-M needs more instructions for the same work; those are counted)"
        if core in MVE_BEATS:
            ratio *= MVE_BEATS[core]
            how += f" x {MVE_BEATS[core]} (cycles per instruction of Helium code: 128-bit vectors in beats)"
        cores[core] = {"cpi": cpi4 * ratio, "error_factor": band * DERIVED_WIDENING, "basis": "derived",
                       "method": f"derived, no published point for this core: {how}; band: the fitted one x "
                                 f"{DERIVED_WIDENING}"}
    result = {"model": "cycles = instructions counted on the emulated core x CPI(core); see benchmarks/fit_cpi.py",
              "g_2020": g2020, "cores": cores, "points": rows,
              # without the emulator: instructions estimated from each op's MACs (and bytes), int8 only
              "instructions_int8": instruction_model(counts)}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        print(f"{row['core']:<10} {row['model']:<24} {row['instructions'] / 1e6:7.2f}M instr  "
              f"{row['published_ms']:7.2f} ms  fit {row['fit_residual']:+.1%}  loo {row['loo_residual']:+.1%}")
    for name, entry in cores.items():
        print(f"{name:<10} CPI {entry['cpi']:.3f}  x/÷{entry['error_factor']:.2f}  {entry['basis']}")


if __name__ == "__main__":
    main()
