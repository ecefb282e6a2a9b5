"""edgekit's LiteRT runner for an emulated aarch64 core: run by the sysroot's Python under qemu-aarch64, never
imported by edgekit itself (it imports nothing of edgekit).

    python3.11 -I litert_runner.py MODEL.tflite INPUT.bin WARMUP THREADS MAGIC [maps]

Loads MODEL with ai_edge_litert's Interpreter (XNNPACK, THREADS threads), sets the first input from INPUT.bin's
raw bytes, runs WARMUP invokes, then ONE timed invoke between two marks the counting plugin watches:
lseek(/dev/null, MAGIC + 1) before it and lseek(/dev/null, MAGIC + 2) after it. Two marks around nothing
(MAGIC + 3, MAGIC + 4) measure what the marking itself costs. Prints one JSON line: the first output's bytes
as hex, its dtype and shape, the guest's own wall time of the timed invoke, and the versions it ran with; with
`maps`, also where each shared object's code was mapped (QEMU emulates /proc/self/maps with guest addresses).
"""

import json
import os
import sys
import time

import numpy as np
from ai_edge_litert import __version__ as litert_version
from ai_edge_litert.interpreter import Interpreter


def main() -> None:
    model, raw, warmup, threads, magic = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
        int(sys.argv[5], 0)
    interpreter = Interpreter(model_path=model, num_threads=threads)
    interpreter.allocate_tensors()
    given = interpreter.get_input_details()[0]
    data = np.frombuffer(open(raw, "rb").read(), dtype=given["dtype"]).reshape(given["shape"])
    interpreter.set_tensor(given["index"], data)
    for _ in range(warmup):
        interpreter.invoke()
    null = os.open("/dev/null", os.O_RDONLY)
    seek, invoke, clock = os.lseek, interpreter.invoke, time.perf_counter_ns
    seek(null, magic + 3, 0)
    seek(null, magic + 4, 0)
    start = clock()
    seek(null, magic + 1, 0)
    invoke()
    seek(null, magic + 2, 0)
    elapsed = clock() - start
    os.close(null)
    maps: dict[str, int] = {}
    if sys.argv[6:] == ["maps"]:
        for line in open("/proc/self/maps").read().splitlines():
            fields = line.split()
            if len(fields) == 6 and fields[5].startswith("/") and fields[3] != "00:00" and int(fields[2], 16) == 0:
                maps.setdefault(fields[5], int(fields[0].split("-")[0], 16))
    produced = interpreter.get_output_details()[0]
    output = interpreter.get_tensor(produced["index"])
    print(json.dumps({"output_hex": output.tobytes().hex(), "dtype": str(output.dtype),
                      "shape": list(output.shape), "guest_ns": elapsed, "python": sys.version.split()[0],
                      "numpy": np.__version__, "litert": litert_version, "maps": maps}))


if __name__ == "__main__":
    main()
