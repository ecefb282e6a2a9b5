"""The ESP32-S3's int8 MACs per cycle, derived (not fitted) from the structure of ESP-NN's kernels.

    python benchmarks/esp_nn_rates.py    # prints the rates; rewrites only the esp32-s3 entry of calibration.json

No TFLite Micro measurement of the ESP32-S3 is used: the rates are instructions counted in ESP-NN's
esp32s3 assembly (espressif/esp-nn, files and commits named below), one cycle each. The Xtensa LX7 issues
one instruction per cycle and the PIE instructions issue in the same pipeline (ESP32-S3 TRM, chapter
"Processor Instruction Extensions"); ESP-NN's listings keep the compiler's schedule, e.g. the fully-connected
loop is annotated [0*II+0] .. [0*II+9], ten cycles for its ten instructions. Stalls, cache misses (weights
are read from flash through the data cache) and TFLM's per-op set-up are not counted, so these rates are
upper bounds: an estimate built on them errs fast.

Per op kind one representative layer shape (SHAPES) turns the per-output costs into MACs per cycle; the
rate moves with the shape (RANGES shows how far). targets/esp32-s3.toml copies the rates with this
derivation in its comments; tests/test_estimate_features.py checks that the two agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("calibration.json")
KEY = "esp32-s3-esp-nn"

# One representative layer per op kind: the pointwise 1x1 convolution of a depthwise-separable network with
# 64 input and 64 output channels (DS-CNN's width, the middle of MobileNetV1-0.25's 8..256), a 3x3
# depthwise convolution over 64 channels with 12 outputs a row, a fully-connected row of 256 inputs.
SHAPES = {"conv": {"in_ch": 64, "out_ch": 64}, "depthwise_conv": {"channels": 64, "out_wd": 12},
          "dense": {"row_len": 256}}

# --- PIE kernels -----------------------------------------------------------------------------------------
# Requantisation, per call. esp_nn_multiply_by_quantized_mult_asm_esp32s3.S (598a8d2e): four lanes with one
# multiplier and shift (the right-shift path TFLite's conv outputs take): 53 instructions.
REQUANT_ONE_MULT = 53
# esp_nn_multiply_by_quantized_mult_ver1_esp32s3.S (598a8d2e): four lanes, a multiplier and shift each:
# 103 instructions (its schedule annotations run [0] .. [92]).
REQUANT_PER_LANE_MULT = 103

# conv, 1x1 with in_ch a multiple of 8: src/convolution/esp_nn_conv_s8_mult8_1x1_esp32s3.S (0ec0440a).
# Eight positions at a time: the input is widened to int16 with its offset added and transposed, then each
# output channel accumulates 8 positions x 8 input channels with eight EE.VSMULAS.S16.QACC (8 int16 MACs
# each: the offset-added input does not fit int8, so this kernel uses the 8-lane form).
C1X1_PER_8_IN = 11  # 8 ee.vsmulas.s16.qacc.ld.incp + ee.vld.l.64.ip, ee.vcmp.lt.s8, ee.vzip.8 (the filter)
# Per output channel and 8 positions besides that loop: 18 set-up (with the first block's MACs), 2 MACs after
# the loop, 20 QACC extraction, 7 bias, 8 requantisation calls, 17 offset/activation/pack, 26 scatter stores
# and loop; plus two requantisation calls (8 lanes).
C1X1_PER_OUT_CH = 98 + 2 * REQUANT_ONE_MULT
C1X1_TRANSPOSE_PER_8_IN = 34  # per 8 positions: the transpose loop body, per 8 input channels
C1X1_PER_GROUP = 27  # per 8 positions: loop set-up and pointer advance


def conv_1x1_pie(in_ch: int, out_ch: int) -> tuple[int, float]:
    """MACs and cycles of one group of 8 positions."""
    blocks = in_ch // 8
    cycles = C1X1_PER_GROUP + C1X1_TRANSPOSE_PER_8_IN * blocks + \
        out_ch * (C1X1_PER_OUT_CH + C1X1_PER_8_IN * (blocks - 1))
    return 8 * in_ch * out_ch, cycles


# conv, the general path (cross-check only, e.g. ResNet-8's 3x3 convolutions):
# src/convolution/esp_nn_conv_s8_filter_aligned_input_padded_esp32s3.S (27d1f4ab). Per output channel and
# filter row, a dot product on ACCX: per 32 bytes two EE.VMULAS.S8.ACCX.LD.IP.QUP (16 int8 MACs each), two
# ee.vld.128.ip and two ee.orq; the input offset is folded into a precomputed filter sum.
GENERAL_PER_32_BYTES = 6
GENERAL_PER_ROW = 24  # row set-up (ACCX zero, unaligned load priming), the last MAC, ACCX read, loop
GENERAL_ROW_TAIL = 3  # a 16-byte remainder of the row
GENERAL_PER_OUTPUT = 53  # offset term, requantisation (scalar), clamp, store, loop


def conv_3x3_pie(in_ch: int) -> tuple[int, float]:
    """MACs and cycles of one output (one position, one output channel) of a 3x3 convolution."""
    row = (3 * in_ch + 15) // 16 * 16 - 16
    per_row = GENERAL_PER_ROW + GENERAL_PER_32_BYTES * (row // 32) + GENERAL_ROW_TAIL * ((row >> 4) & 1)
    return 9 * in_ch, 3 * per_row + GENERAL_PER_OUTPUT


# depthwise_conv, 3x3, channel multiplier 1, channels a multiple of 16 (or padded to it):
# src/convolution/esp_nn_depthwise_conv_s8_mult1_3x3_padded_esp32s3.S (598a8d2e). Per position and 16
# channels: nine EE.VMULAS.S8.QACC (16 int8 MACs each) with eleven ee.vld.128.xp, then the 16 20-bit QACC
# lanes are unpacked with scalar code before four requantisation calls.
DW_MACS = 25  # 9 ee.vmulas.s8.qacc[.ld.xp], 11 ee.vld.128.xp, 5 set-up
DW_EPILOGUE = 145  # 60 QACC extraction, 25 offset and bias, 25 requantisation calls, 35 offset/activation/store
DW_PER_16_CH = DW_MACS + DW_EPILOGUE + 4 * REQUANT_PER_LANE_MULT
DW_PER_ROW = 29  # per output row and 16 channels: the height loop


def depthwise_3x3_pie(channels: int, out_wd: int) -> tuple[int, float]:
    """MACs and cycles of one output position (all channels)."""
    blocks = channels // 16
    return 9 * channels, blocks * (DW_PER_16_CH + DW_PER_ROW / out_wd)


# dense: src/fully_connected/esp_nn_fully_connected_s8_esp32s3.S (598a8d2e); the current dispatcher
# (esp_nn_fully_connected_esp32s3.c) keeps it for rows under about 192 inputs. Per output: per 8 inputs one
# EE.VMULAS.S16.QACC (8 int16 MACs; input and filter offsets added in int16) with two 64-bit loads, two
# sign extensions (ee.vcmp.lt.s8 + ee.vzip.8), two offset adds and an unaligned-filter ee.src.q.qup.
FC_PER_8 = 10
FC_PER_OUTPUT = 98  # 15 set-up, 40 QACC extraction, 4 bias, 39 requantisation, clamp and store
FC_LEFTOVER_PER_INPUT = 10  # scalar loop for row_len % 8


def dense_pie(row_len: int) -> tuple[int, float]:
    """MACs and cycles of one output."""
    left = row_len % 8
    return row_len, FC_PER_OUTPUT + FC_PER_8 * (row_len // 8) + (7 + FC_LEFTOVER_PER_INPUT * left if left else 0)


# --- without PIE: ESP-NN's generic C kernels (src/convolution/esp_nn_conv_opt.c, esp_nn_depthwise_conv_opt.c,
# src/fully_connected/esp_nn_fully_connected_ansi.c), as an Xtensa compiler emits their inner loops ----------
# conv: per MAC l8ui + sext for each operand (Xtensa has no sign-extending byte load), the input-offset add,
# mull, the accumulate add; unrolled by 4, two pointer increments per 4 MACs.
SCALAR_CONV_PER_MAC = 7.5
# depthwise (channel multiplier 1, 4 channels a step): the same 7, the input and filter index arithmetic of each
# filter tap (8 instructions) shared by 4 channels, the loop.
SCALAR_DW_PER_MAC = 9.5
SCALAR_FC_PER_MAC = 10.0  # not unrolled: both operands offset (8) and two increments
SCALAR_PER_OUTPUT = 38  # esp_nn_requantize (64-bit multiply-high, rounding shift: 25), bias, clamp, store, loop


def conv_scalar(in_ch: int) -> tuple[int, float]:
    return in_ch, SCALAR_CONV_PER_MAC * in_ch + SCALAR_PER_OUTPUT


def depthwise_scalar() -> tuple[int, float]:
    return 9, SCALAR_DW_PER_MAC * 9 + SCALAR_PER_OUTPUT


def dense_scalar(row_len: int) -> tuple[int, float]:
    return row_len, SCALAR_FC_PER_MAC * row_len + SCALAR_PER_OUTPUT


# Cross-check only, never used to set a rate: the kernel ticks of ESP-NN's README table ("Kernelwise
# performance for s8 versions", ESP32-S3 at 240 MHz, buffers in external PSRAM, the kernels of its time),
# each with the cycles counted here for the same shape.
README_TICKS = {
    "conv 1x1 10x10, 64 -> 64 (12.5 groups of 8 positions)": (461398, 12.5 * conv_1x1_pie(64, 64)[1]),
    "conv 1x1 8x8, 16 -> 16 (8 groups)": (43578, 8 * conv_1x1_pie(16, 16)[1]),
    "depthwise 3x3 18x18x16, no padding (16x16 outputs)": (191931, 256 * depthwise_3x3_pie(16, 16)[1]),
    "fully connected 265 inputs, 3 outputs": (4439, 3 * dense_pie(265)[1]),
}

# The same table's "ANSI C" column (ESP-NN's reference C kernels, which the generic kernels modelled above
# unroll) beside the scalar counts.
README_ANSI_TICKS = {
    "conv 1x1 10x10, 64 -> 64": (4642259, 100 * 64 * conv_scalar(64)[1]),
    "conv 1x1 8x8, 16 -> 16": (300032, 64 * 16 * conv_scalar(16)[1]),
    "depthwise 3x3 18x18x16, no padding": (1192832, 256 * 16 * depthwise_scalar()[1]),
    "fully connected 265 inputs, 3 outputs": (12290, 3 * dense_scalar(265)[1]),
}


def _rate(macs_cycles: tuple[int, float]) -> float:
    macs, cycles = macs_cycles
    return macs / cycles


def derive() -> dict:
    """The rates with and without PIE for the representative shapes, the spread over other shapes, and
    the general 3x3 path as a cross-check of the conv rate."""
    conv, dw, fc = SHAPES["conv"], SHAPES["depthwise_conv"], SHAPES["dense"]
    return {
        "method": "derived from instruction counts of ESP-NN's esp32s3 kernels, one cycle each (not fitted)",
        "shapes": SHAPES,
        "pie-simd": {"conv": _rate(conv_1x1_pie(conv["in_ch"], conv["out_ch"])),
                     "depthwise_conv": _rate(depthwise_3x3_pie(dw["channels"], dw["out_wd"])),
                     "dense": _rate(dense_pie(fc["row_len"]))},
        "scalar": {"conv": _rate(conv_scalar(conv["in_ch"])), "depthwise_conv": _rate(depthwise_scalar()),
                   "dense": _rate(dense_scalar(fc["row_len"]))},
        "ranges": {"conv_1x1 in_ch=out_ch 32/128/256": [_rate(conv_1x1_pie(c, c)) for c in (32, 128, 256)],
                   "conv_3x3_general in_ch 16/32/64": [_rate(conv_3x3_pie(c)) for c in (16, 32, 64)],
                   "depthwise_3x3 out_wd 3/48": [_rate(depthwise_3x3_pie(64, w)) for w in (3, 48)],
                   "dense row_len 128/640": [_rate(dense_pie(n)) for n in (128, 640)]},
        "readme_ticks_over_counted": {name: ticks / counted for name, (ticks, counted) in README_TICKS.items()},
        "readme_ansi_ticks_over_scalar_counted": {name: ticks / counted
                                                  for name, (ticks, counted) in README_ANSI_TICKS.items()},
    }


def main() -> dict:
    """Rewrite only this entry of calibration.json (the other entries come from benchmarks/calibrate.py)."""
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result[KEY] = derive()
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result[KEY]


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
