"""Training scale-out: train, prune, cluster and quantization-aware train under a tf.distribute strategy.

- `mirrored`: tf.distribute.MirroredStrategy over this machine's GPUs or, without a GPU, its logical CPU
  devices. A CPU is one device unless EDGEKIT_CPU_DEVICES=N asks TensorFlow for N logical CPU devices; that
  has to happen before TensorFlow initialises its devices, so edgekit._tf.start reads the variable when it
  starts TensorFlow (set it in the environment, not from code that has already started TensorFlow).
- `multiworker`: tf.distribute.MultiWorkerMirroredStrategy, configured by the standard TF_CONFIG variable and
  created as TensorFlow starts (`check` starts it so, or refuses once it started without); every worker runs
  the same command, and only the chief (task type "chief", or worker 0 when the cluster
  has no chief) writes the build folder.

`batch_size` stays the global batch: each step splits it across the replicas (Keras's rule for a strategy),
so a recipe trains on the same number of samples per step whatever the strategy; the learning rate is not
scaled. The results differ numerically from single-device training (gradients are summed in another
order and per-replica batch statistics differ), so the strategy is part of the train and optimize cache keys.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from edgekit.errors import UsageError

log = logging.getLogger("edgekit")

STRATEGIES = ("mirrored", "multiworker")
CPU_DEVICES_ENV = "EDGEKIT_CPU_DEVICES"
DOCS = "docs/distributed.md"


def check(name: str | None) -> None:
    """Fail before any work on an unknown strategy, or on multiworker without a valid TF_CONFIG."""
    if name is None:
        return
    if name not in STRATEGIES:
        raise UsageError(f"distribute '{name}': expected one of {', '.join(STRATEGIES)}")
    cpu_device_count()  # a bad EDGEKIT_CPU_DEVICES fails here rather than when TensorFlow starts
    if name == "multiworker":
        tf_config()
        from edgekit._tf import start

        start(multiworker=True)  # starts TensorFlow with the strategy, or says it started without one


def cpu_device_count(environ: dict[str, str] | None = None) -> int | None:
    """EDGEKIT_CPU_DEVICES as a count of logical CPU devices, or None when it is not set."""
    value = (os.environ if environ is None else environ).get(CPU_DEVICES_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise UsageError(f"{CPU_DEVICES_ENV}={value!r}: expected a whole number of logical CPU devices from 1 to 64")
    return int(value)


def startup(tf, multiworker: bool = False) -> None:
    """Called by edgekit._tf.start right after importing TensorFlow, before anything initialises its devices
    (after that TensorFlow refuses both): split the first CPU into EDGEKIT_CPU_DEVICES logical devices, and
    create the MultiWorkerMirroredStrategy when asked, since its collective ops must be configured at start-up."""
    count = cpu_device_count()
    if count is not None and count > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    if multiworker:
        _strategy(tf, "multiworker")


def tf_config(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """TF_CONFIG, parsed and checked: {"cluster": {type: [host:port, ...]}, "task": {"type", "index"}}."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    how = f"see {DOCS} for one worker's TF_CONFIG"
    if not raw:
        raise UsageError(f"--distribute multiworker needs TF_CONFIG (the cluster's addresses and this worker's "
                         f"task) in the environment; {how}")
    try:
        config = json.loads(raw)
    except ValueError as error:
        raise UsageError(f"TF_CONFIG is not JSON ({error}); {how}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError(f"TF_CONFIG has no \"cluster\" table of task types and host:port lists; {how}")
    for kind, addresses in cluster.items():
        if kind not in ("chief", "worker"):
            raise UsageError(f"TF_CONFIG cluster task type '{kind}': expected chief or worker "
                             "(MultiWorkerMirroredStrategy has no parameter servers; edgekit runs no evaluator)")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)):
            raise UsageError(f"TF_CONFIG cluster '{kind}': expected a list of \"host:port\" addresses, "
                             f"got {addresses!r}")
    if len(cluster.get("chief", [])) > 1:
        raise UsageError(f"TF_CONFIG cluster has {len(cluster['chief'])} chiefs; at most one is allowed")
    if not isinstance(task, dict) or not isinstance(task.get("type"), str) or not isinstance(task.get("index"), int):
        raise UsageError(f"TF_CONFIG has no \"task\" with a \"type\" and an integer \"index\" (this worker's "
                         f"place in the cluster); {how}")
    kind, index = task["type"], task["index"]
    if kind not in cluster or not 0 <= index < len(cluster[kind]):
        count = len(cluster.get(kind, []))
        raise UsageError(f"TF_CONFIG task {kind} {index} is not in the cluster ({count} {kind} address"
                         f"{'es' if count != 1 else ''}); the index counts from 0")
    return {"cluster": cluster, "task": {"type": kind, "index": index}}


def is_chief(name: str | None) -> bool:
    """Whether this process writes artifacts: always, except a non-chief worker of a multiworker cluster."""
    if name != "multiworker":
        return True
    config = tf_config()
    kind, index = config["task"]["type"], config["task"]["index"]
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in config["cluster"])


def strategy(name: str):
    """The process's one strategy of this kind: MultiWorkerMirroredStrategy may only be created once."""
    check(name)
    from edgekit._tf import tf

    return _strategy(tf, name)


@functools.cache
def _strategy(tf, name: str):
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        made = tf.distribute.MirroredStrategy(devices=devices)
    else:
        made = tf.distribute.MultiWorkerMirroredStrategy()  # edgekit._tf.start made it first (check() asked)
    log.info("distribute %s: %d replica%s in sync (%s)", name, made.num_replicas_in_sync,
             "s" if made.num_replicas_in_sync != 1 else "", ", ".join(made.extended.worker_devices))
    if name == "mirrored" and made.num_replicas_in_sync == 1:
        log.info("distribute mirrored: one device only; set %s=N or use a machine with several GPUs to train on N",
                 CPU_DEVICES_ENV)
    return made


@contextlib.contextmanager
def scope(name: str | None) -> Iterator[Any]:
    """Inside: models, wrappers and optimizers are created under the strategy (None: no strategy)."""
    if name is None:
        yield None
        return
    chosen = strategy(name)
    with chosen.scope():
        yield chosen


def describe(name: str | None) -> dict[str, Any]:
    """For the train and optimize cache keys and report.json: the strategy and its replicas ({} for none)."""
    if name is None:
        return {}
    chosen = strategy(name)
    record: dict[str, Any] = {"strategy": name, "replicas": chosen.num_replicas_in_sync,
                              "devices": list(chosen.extended.worker_devices)}
    if name == "multiworker":
        record["workers"] = sum(len(v) for v in tf_config()["cluster"].values())
    return record
