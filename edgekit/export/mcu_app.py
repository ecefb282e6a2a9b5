"""The application an MCU bundle carries (`main.cc`, or an Arduino sketch): it loads the model, runs it on
the stored test input, checks the output and prints one JSON line per run. edgekit runs this same program,
linked with its board file, on an emulated core (`edgekit.runtimes.emulated`); on a board it runs as it is.

Hooks a board file may provide, both optional: `edgekit_micros()` (a microsecond timer; main.cc needs it)
and `edgekit_profiler()` (a TFLite Micro profiler, weak: without it there is none). Defines a build may set:
EDGEKIT_RUNS (how many runs, 10 by default)."""

from __future__ import annotations

C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float"}


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) or "Model"


def application(name: str, expected, flavour: str = "main", npu: bool = False) -> str:
    """The program's source: `main` (main.cc, for a plain CMake project and edgekit's emulated cores),
    `arduino` (a sketch's .ino) or `esp-idf` (main.cc with ESP-IDF's app_main and esp_timer). A model with
    resource variables (`k...ResourceVariables` in model_ops.h) keeps state between runs, so only its first
    run is checked against the stored output. `npu`: the model is Vela's, and main() first starts the Ethos-U
    driver (ethosu_npu.h, edgekit.export.ethosu)."""
    arduino, esp = flavour == "arduino", flavour == "esp-idf"
    # Integer outputs: within one step (optimized kernels may round differently from the host's reference
    # ones). Float outputs: within 1e-5 (the core's fused multiply-adds and its libm's expf round differently).
    model, tolerance = camel(name), "1e-5" if expected.dtype.kind == "f" else "1"
    c_type = C_TYPES[expected.dtype.name]
    if arduino:
        timer = "// Microseconds since boot: Arduino's timer.\nstatic unsigned long Now() { return micros(); }"
    elif esp:
        timer = ("// Microseconds since boot: ESP-IDF's esp_timer.\n"
                 "static unsigned long Now() { return static_cast<unsigned long>(esp_timer_get_time()); }")
    else:
        timer = ("// Microseconds since boot from your board's timer (SysTick, DWT->CYCCNT / MHz...).\n"
                 'extern "C" uint32_t edgekit_micros(void);\nstatic unsigned long Now() { return edgekit_micros(); }')
    # Arduino finds a library by the header a sketch includes first: the TFLM port's own.
    first = ("// The Arduino TensorFlow Lite library (Arduino_TensorFlowLite); it puts TFLM's headers on the path.\n"
             "#include <TensorFlowLite.h>\n\n" if arduino else "")
    platform = '#include "esp_timer.h"\n' if esp else '#include "ethosu_npu.h"\n' if npu else ""
    common = f"""{first}#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "model_data.h"
#include "model_arena.h"
#include "model_ops.h"
#include "test_data.h"
{platform}
#ifndef EDGEKIT_RUNS
#define EDGEKIT_RUNS 10
#endif
{timer}
alignas(16) static uint8_t tensor_arena[k{model}ArenaSize];

// A board file may give TFLite Micro a profiler (edgekit's emulated boards count instructions per op).
tflite::MicroProfilerInterface* edgekit_profiler() __attribute__((weak));

// The interpreter, or nullptr after printing why it could not be made (TFLite Micro's own log, printed
// through DebugLog just before, says what failed: a missing op, too small an arena, a kernel's Prepare).
static tflite::MicroInterpreter* MakeInterpreter(const {model}OpResolver& resolver) {{
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(tensor_arena, k{model}ArenaSize);
  if (allocator == nullptr) return nullptr;
  tflite::MicroResourceVariables* variables =
      k{model}ResourceVariables > 0 ? tflite::MicroResourceVariables::Create(allocator, k{model}ResourceVariables)
                                    : nullptr;
  static tflite::MicroInterpreter interpreter(tflite::GetModel({name}), resolver, allocator, variables,
                                              edgekit_profiler ? edgekit_profiler() : nullptr);
  if (interpreter.AllocateTensors() != kTfLiteOk) return nullptr;
  return &interpreter;
}}

// One run: the largest difference from the expected output, or -1 when Invoke fails. Only Invoke() is
// timed (`elapsed`, in the timer's unit): not the input copy, not the check.
static double RunOnce(tflite::MicroInterpreter& interpreter, unsigned long& elapsed) {{
  TfLiteTensor* input = interpreter.input(0);
  std::memcpy(input->data.raw, {name}_test_input, sizeof({name}_test_input));
  unsigned long start = Now();
  TfLiteStatus status = interpreter.Invoke();
  elapsed = Now() - start;
  if (status != kTfLiteOk) return -1;
  const TfLiteTensor* output = interpreter.output(0);
  const {c_type}* values = reinterpret_cast<const {c_type}*>(output->data.raw);
  double worst = 0;
  for (unsigned i = 0; i < sizeof({name}_expected_output) / sizeof({name}_expected_output[0]); ++i) {{
    double diff = std::fabs(static_cast<double>(values[i]) - static_cast<double>({name}_expected_output[i]));
    if (diff > worst) worst = diff;
  }}
  return worst;
}}

// The output bytes of the run just made, as hex: compare them with the host's.
static void FormatOutput(tflite::MicroInterpreter& interpreter, char* text, size_t size) {{
  const TfLiteTensor* output = interpreter.output(0);
  size_t n = 0;
  for (size_t i = 0; i < output->bytes && n + 2 < size; ++i, n += 2) {{
    std::snprintf(text + n, 3, "%02x", static_cast<unsigned>(reinterpret_cast<const uint8_t*>(output->data.raw)[i]));
  }}
  text[n] = 0;
}}

static const char kSetupError[] =
    "{{\\"error\\": \\"AllocateTensors failed; TFLite Micro's log above says why\\"}}";
"""
    line = '"{\\"run\\": %d, \\"latency_us\\": %lu, \\"ok\\": %s, \\"max_diff\\": %d, \\"arena_used\\": %u}"'
    check = (f"bool checked = run == 0 || k{model}ResourceVariables == 0;\n"
             f"    bool ok = !checked || (diff >= 0 && diff <= {tolerance});")
    if arduino:
        return common + f"""
void setup() {{
  Serial.begin(115200);
  while (!Serial) {{}}
  static {model}OpResolver resolver;
  if (Register{model}Ops(resolver) != kTfLiteOk) {{ Serial.println("{{\\"error\\": \\"op registration\\"}}"); return; }}
  tflite::MicroInterpreter* interpreter = MakeInterpreter(resolver);
  if (interpreter == nullptr) {{
    Serial.println(kSetupError);
    return;
  }}
  for (int run = 0; run < EDGEKIT_RUNS; ++run) {{
    unsigned long elapsed = 0;
    double diff = RunOnce(*interpreter, elapsed);
    {check}
    char text[200];
    snprintf(text, sizeof(text), {line}, run, elapsed, ok ? "true" : "false", static_cast<int>(diff),
             static_cast<unsigned>(interpreter->arena_used_bytes()));
    Serial.println(text);
  }}
}}

void loop() {{}}
"""
    entry, stop = ('extern "C" void app_main(void)', "return;") if esp else ("int main()", "return 1;")
    npu_start = f"""
  // The Ethos-U driver first: the model's NPU work runs in its custom operator.
  if (edgekit_npu_init() != 0) {{
    std::printf("{{\\"error\\": \\"Ethos-U driver init\\"}}\\n");
    {stop}
  }}""" if npu else ""
    result = "\n  (void)failures;  // app_main returns: the log says which runs failed" if esp else \
        "\n  return failures ? 1 : 0;"
    return common + f"""

{entry} {{{npu_start}
  static {model}OpResolver resolver;
  if (Register{model}Ops(resolver) != kTfLiteOk) {{
    std::printf("{{\\"error\\": \\"op registration\\"}}\\n");
    {stop}
  }}
  tflite::MicroInterpreter* interpreter = MakeInterpreter(resolver);
  if (interpreter == nullptr) {{
    std::printf("%s\\n", kSetupError);
    {stop}
  }}
  int failures = 0;
  static char output_hex[2 * sizeof({name}_expected_output) + 1];
  for (int run = 0; run < EDGEKIT_RUNS; ++run) {{
    unsigned long elapsed = 0;
    double diff = RunOnce(*interpreter, elapsed);
    {check}
    failures += ok ? 0 : 1;
    std::printf({line[:-1]}\\n", run, elapsed, ok ? "true" : "false",
                static_cast<int>(diff), static_cast<unsigned>(interpreter->arena_used_bytes()));
    if (run == 0) {{
      FormatOutput(*interpreter, output_hex, sizeof(output_hex));
      std::printf("{{\\"output_hex\\": \\"%s\\"}}\\n", output_hex);
    }}
  }}{result}
}}
"""
