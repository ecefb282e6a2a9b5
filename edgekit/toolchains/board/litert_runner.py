"""edgekit's LiteRT runner for an emulated aarch64 core: run by the sysroot's Python under qemu-aarch64, never
imported by edgekit itself (it imports nothing of edgekit).

    python3.11 -I litert_runner.py MODEL.tflite INPUT.bin WARMUP THREADS MAGIC [maps]

Loads MODEL with ai_edge_litert's Interpreter (XNNPACK, THREADS threads), sets the first input from INPUT.bin's
raw bytes (or, from an INPUT.npz, every input by tensor name, resized to the stored shape, and "__state__" as
IN=OUT pairs of tensor names: each output OUT goes back into input IN after every warm-up invoke, so that the
timed invoke is a recurrent model's steady state), runs WARMUP invokes, then ONE timed invoke between two
marks the counting plugin watches:
lseek(/dev/null, MAGIC + 1) before it and lseek(/dev/null, MAGIC + 2) after it. Two marks around nothing
(MAGIC + 3, MAGIC + 4) measure what the marking itself costs. Prints one JSON line: the first output's bytes
as hex, its dtype and shape, the guest's own wall time of the timed invoke, and the versions it ran with; with
`maps`, also where each shared object's code was mapped (QEMU emulates /proc/self/maps with guest addresses).

It also reports "memory": glibc's own heap counters (mallinfo2: bytes in use = uordblks + hblkhd, every malloc
arena and every mmapped chunk) read before Interpreter(), after it, after allocate_tensors(), after the first
invoke and after the last warm-up, as net growths in bytes (what a step allocated and kept; what it freed
again within the step is not seen):

- interpreter_bytes: Interpreter(model_path=...). LiteRT mmaps the .tflite file read-only (it shows in
  /proc/self/maps) and does not copy it: the int8 conv with 16 channels and with 256 (3 KB and 17 KB files)
  both grow the heap by ~105 KB; MobileNet-v1 0.25 (300 KB) by 160 KB.
- allocate_bytes: allocate_tensors(). LiteRT applies its default XNNPACK delegate lazily, HERE, not in the
  constructor, so this is TFLite's arena for the tensors XNNPACK leaves to it, plus XNNPACK's packed weights,
  its runtime and operators, and its workspace for the delegated graph's intermediate tensors: not the
  tensor arena alone. XNNPACK allocates with malloc and posix_memalign, which mallinfo2 counts.
- first_invoke_bytes, warmup_bytes: the first invoke and the other warm-ups (tens of bytes with XNNPACK).
- total_bytes: all of the above, the interpreter's heap for this model.
- outside_malloc_bytes: growth of the process's writable anonymous mappings (QEMU's emulated /proc/self/maps)
  from before Interpreter() to after the warm-ups, less the growth of what malloc has mapped (its arenas and
  mmapped chunks): memory mallinfo2 cannot see (a direct mmap, a pymalloc arena; with THREADS > 1, the
  pool's thread stacks, mapped rather than resident). 0 when the heap counters saw everything.
- model_file_bytes: the .tflite file's size; model_mapped_bytes: how much of it the process has mapped after
  Interpreter() (whole pages: the file is in the page cache, not the heap).
- tensor_bytes_largest, tensor_bytes_all_intermediate, tensor_bytes_constant: from get_tensor_details(); the
  intermediates are the model's inputs and every op's outputs, the constants every other tensor.

The process's peak RSS is not reported: under qemu-aarch64, /proc/self/status (Name: qemu-aarch64) and
getrusage are the host QEMU process's (~90 MB with its translated code), not the guest's.
"""

import ctypes
import json
import os
import sys
import time

import numpy as np
from ai_edge_litert import __version__ as litert_version
from ai_edge_litert.interpreter import Interpreter


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2


def heap() -> tuple[int, int]:
    """Bytes malloc has handed out and not had back; and the bytes of the process's writable anonymous mappings
    less those malloc has mapped (its arenas and mmapped chunks)."""
    info = LIBC.mallinfo2()
    anonymous = 0
    for line in open("/proc/self/maps").read().splitlines():
        fields = line.split()
        if (len(fields) == 5 or fields[5] == "[heap]") and fields[1].startswith("rw"):
            start, end = fields[0].split("-")
            anonymous += int(end, 16) - int(start, 16)
    return info.uordblks + info.hblkhd, anonymous - info.arena - info.hblkhd


def tensor_bytes(interpreter: Interpreter) -> dict[str, int]:
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    made = {int(index) for op in ops for index in op["outputs"]} | \
        {given["index"] for given in interpreter.get_input_details()}
    sizes: dict[bool, list[int]] = {True: [0], False: [0]}
    for tensor in interpreter.get_tensor_details():
        size = int(np.prod(tensor["shape"])) * np.dtype(tensor["dtype"]).itemsize
        sizes[tensor["index"] in made].append(size)
    return {"tensor_bytes_largest": max(sizes[True]), "tensor_bytes_all_intermediate": sum(sizes[True]),
            "tensor_bytes_constant": sum(sizes[False])}


def main() -> None:
    model, raw, warmup, threads, magic = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
        int(sys.argv[5], 0)
    feeds, state = {}, []
    if raw.endswith(".npz"):
        with np.load(raw, allow_pickle=False) as stored:
            feeds = {name: stored[name] for name in stored.files if name != "__state__"}
            state = [str(pair).split("=", 1) for pair in stored["__state__"]] if "__state__" in stored.files else []
    else:
        contents = open(raw, "rb").read()
    points = [heap()]
    interpreter = Interpreter(model_path=model, num_threads=threads)
    points.append(heap())
    mapped = sum(int(end, 16) - int(start, 16) for start, end, path in
                 ((*line.split()[0].split("-"), line.split()[-1]) for line in open("/proc/self/maps"))
                 if path == os.path.realpath(model))
    inputs = {detail["name"]: detail for detail in interpreter.get_input_details()}
    for name, value in feeds.items():
        if tuple(inputs[name]["shape"]) != value.shape:
            interpreter.resize_tensor_input(inputs[name]["index"], list(value.shape))
    interpreter.allocate_tensors()
    points.append(heap())
    if feeds:
        inputs = {detail["name"]: detail for detail in interpreter.get_input_details()}
        for name, value in feeds.items():
            interpreter.set_tensor(inputs[name]["index"], value)
    else:
        given = interpreter.get_input_details()[0]
        interpreter.set_tensor(given["index"], np.frombuffer(contents, dtype=given["dtype"]).reshape(given["shape"]))
    outputs = {detail["name"]: detail["index"] for detail in interpreter.get_output_details()}
    carried = [(inputs[into]["index"], outputs[out]) for into, out in state]
    for done in range(warmup):
        interpreter.invoke()
        for into, out in carried:
            interpreter.set_tensor(into, interpreter.get_tensor(out))
        if done == 0 or done == warmup - 1:
            points.append(heap())
    points += [points[-1]] * (5 - len(points))  # no warm-up: nothing grew
    used = [point[0] for point in points]
    memory = {"interpreter_bytes": used[1] - used[0], "allocate_bytes": used[2] - used[1],
              "first_invoke_bytes": used[3] - used[2], "warmup_bytes": used[4] - used[3],
              "total_bytes": used[4] - used[0], "outside_malloc_bytes": points[4][1] - points[0][1],
              "model_file_bytes": os.path.getsize(model), "model_mapped_bytes": mapped,
              **tensor_bytes(interpreter)}
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
                      "numpy": np.__version__, "litert": litert_version, "maps": maps,
                      "memory": memory}))


if __name__ == "__main__":
    main()
