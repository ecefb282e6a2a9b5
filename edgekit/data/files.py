"""Array files: `.npz` (x_train, y_train, optional x_val/y_val and x_test/y_test) and `.csv` (a label column,
or for regression a numeric target column, the rest numeric features)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from edgekit.data.core import Samples
from edgekit.errors import UsageError

NPZ_PAIRS = (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test"))
DEFAULT_LABEL_COLUMN = "label"


def read_npz(path: Path) -> Samples:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UsageError(f"{path}: not a readable .npz file ({str(e).splitlines()[0]})") from e
    for x_key, y_key in NPZ_PAIRS:
        if (x_key in arrays) != (y_key in arrays) or x_key == "x_train" and x_key not in arrays:
            missing = y_key if x_key in arrays else x_key
            raise UsageError(f"{path}: no array '{missing}' (found: {', '.join(sorted(arrays)) or 'none'}); an .npz "
                             "needs x_train and y_train, and optionally x_val/y_val and x_test/y_test")
    for key in ("x_train", "x_val", "x_test"):
        if key in arrays and arrays[key].ndim < 2:
            raise UsageError(f"{path}: {key} has shape {arrays[key].shape}; expected one row per sample")
    pairs = {x_key[2:]: (arrays[x_key], arrays[y_key]) for x_key, y_key in NPZ_PAIRS if x_key in arrays}
    x, y = pairs["train"]
    # 8-bit arrays are pixels: they are scaled by 1/255 and may be resized to the model's input.
    return Samples(str(path), x, y, val=pairs.get("val"), test=pairs.get("test"), images=x.dtype == np.uint8)


def read_csv(path: Path, label: str | None, regression: bool = False) -> Samples:
    """`label` names the label column by header name or 0-based index (default: the column `label`); with
    `regression` it is the target column, read as numbers and named in `Samples.labels`."""
    what = "target column" if regression else "label column"
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise UsageError(f"{path}: the file is empty")
    header = [cell.strip() for cell in header]
    column = _label_column(path, header, label, what)
    features = [i for i in range(len(header)) if i != column]
    if not features:
        raise UsageError(f"{path}: only the {what}; a .csv needs at least one feature column")
    has_header = label is None or not label.isdigit() or not all(_is_number(header[i]) for i in features)
    names = header if has_header else [f"column {i}" for i in range(len(header))]
    skip = 1 if has_header else 0
    try:
        x = np.loadtxt(path, delimiter=",", skiprows=skip, usecols=features, dtype=np.float32, ndmin=2,
                       comments=None, quotechar='"')
        y = np.loadtxt(path, delimiter=",", skiprows=skip, usecols=[column], dtype=str, ndmin=1, comments=None,
                       quotechar='"')
    except ValueError as e:  # find the exact cell again, slowly, to name it
        raise _first_bad_cell(path, names, features, skip) or UsageError(f"{path}: {str(e).splitlines()[0]}") from e
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UsageError(f"{path}: line {row + skip + 1}, column '{names[features[col]]}': {x[row, col]} is not a "
                         f"finite number ({int(bad.any(axis=1).sum())} rows hold NaN or infinite values)")
    if regression:
        name = names[column]
        return Samples(str(path), x, _targets(path, y, name, skip), labels=(name,), standardize=True)
    return Samples(str(path), x, y, standardize=True)


def _targets(path: Path, cells: np.ndarray, name: str, skip: int) -> np.ndarray:
    """The target column's text -> float32 values, naming the line of the first one that is not a finite number."""
    values = np.empty(len(cells), dtype=np.float32)
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf and is refused below
        for row, text in enumerate(cells.tolist()):
            try:
                values[row] = float(text)
            except ValueError:
                raise UsageError(f"{path}: line {row + skip + 1}, target column '{name}': '{text}' is not a number "
                                 "(regression targets must be numeric)") from None
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise UsageError(f"{path}: line {row + skip + 1}, target column '{name}': {cells[row].strip()} is not a "
                         f"finite number ({int(bad.sum())} rows hold NaN or infinite targets)")
    return values


def _label_column(path: Path, header: list[str], label: str | None, what: str = "label column") -> int:
    label = DEFAULT_LABEL_COLUMN if label is None else label
    if label in header:
        return header.index(label)
    if label.isdigit():
        if int(label) < len(header):
            return int(label)
        raise UsageError(f"{path}: {what} {label} is out of range; the file has {len(header)} columns "
                         f"(0 to {len(header) - 1})")
    shown = ", ".join(header[:8]) + (f", ... ({len(header)} in all)" if len(header) > 8 else "")
    raise UsageError(f"{path}: no {what} '{label}' (columns: {shown}); name it with {path.name}#label=NAME "
                     "or #label=INDEX")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_bad_cell(path: Path, names: list[str], features: list[int], skip: int) -> UsageError | None:
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if line <= skip:
                continue
            if len(row) != len(names):
                return UsageError(f"{path}: line {line} has {len(row)} fields; the header has {len(names)}")
            for i in features:
                if not _is_number(row[i]):
                    return UsageError(f"{path}: line {line}, column '{names[i]}': '{row[i]}' is not a number "
                                      "(features must be numeric)")
    return None
