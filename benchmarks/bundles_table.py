"""Issue 6's acceptance figures, made the way a user makes them, through the `edgekit` command:

1. `edgekit build --target rpi4` (digits-cnn): its bundle is the single-board computer one;
2. `edgekit export` of that build's int8 model for a phone and for a microcontroller: one bundle per class;
3. `edgekit export` of the MLPerf Tiny DS-CNN (int8) for the same microcontroller, and for one with an Ethos-U
   (its C array is the model Vela compiled, its arena estimated): their C arrays and arenas;
4. the board bundle's `bench_on_device.py`, run on this host as a device would run it, then
   `edgekit compare` of its result with the build's estimates.

    python benchmarks/bundles_table.py   # writes benchmarks/bundles.json and docs/bundles.md (about 1 minute)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from calibration import reference_tflite

from edgekit.report.text import host

HERE = Path(__file__).resolve().parent
EDGEKIT = [sys.executable, "-m", "edgekit"]
BOARD, PHONE, MCU, NPU_MCU = "rpi4", "android-midrange", "nucleo-l4r5zi", "alif-ensemble-e7"


def run(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def listing(folder: Path) -> list[dict]:
    return [{"file": path.name, "bytes": path.stat().st_size} for path in sorted(folder.iterdir()) if path.is_file()]


def c_array(bundle: Path) -> dict:
    """The model array's length and the arena constant, read back from the files a firmware includes."""
    model_json = json.loads((bundle / "model.json").read_text())
    arena = next(line for line in (bundle / "model_arena.h").read_text().splitlines() if "constexpr" in line)
    source = bundle / "model_data.cc"
    return {"array": model_json["array"], "model_bytes": model_json["bytes"], "source": source.name,
            "source_bytes": source.stat().st_size, "arena_line": arena.strip()}


def main() -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        run(*EDGEKIT, "build", "--target", BOARD, "--out", str(root / "build"))
        build = root / "build" / f"digits-cnn-{BOARD}"
        int8 = build / "int8.tflite"
        run(*EDGEKIT, "export", str(int8), "--target", PHONE, "--out", str(root / "phone"))
        run(*EDGEKIT, "export", str(int8), "--target", MCU, "--out", str(root / "mcu"), "--data", "digits")
        dscnn = root / "kws-ds-cnn.int8.tflite"
        dscnn.write_bytes(reference_tflite("ds-cnn", (49, 10, 1), 12, (), "int8"))
        run(*EDGEKIT, "export", str(dscnn), "--target", MCU, "--out", str(root / "mcu-dscnn"), "--name", "kws_model")
        run(*EDGEKIT, "export", str(dscnn), "--target", NPU_MCU, "--out", str(root / "npu-dscnn"),
            "--name", "kws_model")
        board = build / "bundle" / BOARD
        board_files = listing(board)  # as the build wrote it, before the device script adds result.json
        run(sys.executable, "bench_on_device.py", "--model", "int8.tflite", "--out", "result.json", cwd=board)
        # --force: this host is no Pi, and compare refuses its measurement for one without it
        comparison = json.loads(run(*EDGEKIT, "compare", str(build), str(board / "result.json"), "--json", "--force"))
        results = {
            "host": host(),
            "bundles": {f"sbc ({BOARD}, edgekit build)": board_files, f"phone ({PHONE})": listing(root / "phone"),
                        f"mcu ({MCU})": listing(root / "mcu"),
                        f"mcu with an Ethos-U ({NPU_MCU}, kws-ds-cnn)": listing(root / "npu-dscnn")},
            "c_arrays": {"digits-cnn int8": c_array(root / "mcu"), "kws-ds-cnn int8": c_array(root / "mcu-dscnn"),
                         f"kws-ds-cnn int8, Vela's model for {NPU_MCU} (arena estimated)": c_array(
                             root / "npu-dscnn")},
            "device_result": json.loads((board / "result.json").read_text()),
            "compare": comparison,
        }
    (HERE / "bundles.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE.parent / "docs" / "bundles.md").write_text(to_markdown(results))
    return results


def to_markdown(results: dict) -> str:
    lines = ["# Deployment bundles, as written", "",
             f"Written by `benchmarks/bundles_table.py` on {results['host']['cpu']} ({results['host']['cores']} cores) "
             "through the `edgekit` command.", ""]
    for name, files in results["bundles"].items():
        lines += [f"## {name}", "", "| file | bytes |", "|---|---:|",
                  *(f"| `{f['file']}` | {f['bytes']:,} |" for f in files), ""]
    lines += ["## C arrays for TFLite Micro", "",
              "The model array (`model_data.cc`, 16-byte aligned) and the arena constant (`model_arena.h`: the "
              "smallest arena the TFLite Micro runtime ran the model in, plus the profile's margin, rounded to 16; "
              "for the Ethos-U board, Vela's SRAM plan plus TFLite Micro's persistent data, an estimate). "
              "DS-CNN's weights are untrained here (Speech Commands needs a download); its size and arena do not "
              "depend on the weight values.", "",
              "| model | C array (`--name`) | array bytes | source file, bytes | arena |", "|---|---|---:|---|---|"]
    for name, figures in results["c_arrays"].items():
        lines.append(f"| {name} | `{figures['array']}` | {figures['model_bytes']:,} | `{figures['source']}`, "
                     f"{figures['source_bytes']:,} | `{figures['arena_line']}` |")
    lines += ["", "## `edgekit compare` of `bench_on_device.py` run on this host", "",
              "The board bundle's script ran here as it would on the board (LiteRT, no TensorFlow). The estimate "
              f"is for {results['compare'].get('target', 'the target')}, the measurement is this host's, so the "
              "error shows the host/target gap; on the real board it shows the estimate's error.", "",
              "| figure | estimate | measured | error | expected |", "|---|---|---|---:|---|",
              *(f"| {r['figure']} | {r['estimate']} | {r['measured']} | {r['error']} | {r['expected']} |"
                for r in results["compare"]["rows"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    figures = main()
    print(json.dumps(figures["c_arrays"], indent=2))
