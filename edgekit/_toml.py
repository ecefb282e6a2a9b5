"""Reading the TOML data files (targets/, models/) strictly: unknown keys and wrong types are errors
that name the file, the key and what was expected."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError, unknown_name

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(kind: str) -> Path:
    """Folder of the built-in `targets` or `models` files: inside the wheel, or the source checkout."""
    installed = _PACKAGE / "_builtin" / kind
    return installed if installed.is_dir() else _PACKAGE.parent / kind


def builtin_names(kind: str) -> dict[str, Path]:
    """name -> file for every built-in TOML file of a kind (the file name is the name)."""
    return {p.stem: p for p in sorted(builtin_dir(kind).glob("*.toml"))}


def resolve(kind: str, noun: str, name_or_path: str | Path, list_command: str) -> Path:
    """A built-in name (`rpi4`), or a path to a user's own TOML file (`./my-board.toml`)."""
    text = str(name_or_path)
    names = builtin_names(kind)
    if text in names:
        return names[text]
    path = Path(text).expanduser()
    if path.suffix == ".toml" or path.exists() or "/" in text:
        if not path.is_file():
            raise UsageError(f"{noun} file '{text}' does not exist")
        return path
    raise unknown_name(noun, text, names, list_command)


def read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None


class Table:
    """A view on one TOML table that hands out typed values and remembers which keys were read,
    so that `done()` can reject the keys nobody asked for (a typo must not pass silently)."""

    def __init__(self, data: Mapping[str, Any], file: Path, where: str = ""):
        self.data, self.file, self.where = data, file, where
        self._seen: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _fail(self, key: str, expected: str, got: Any = None) -> UsageError:
        received = "missing" if got is None else f"got {got!r}"
        return UsageError(f"{self.file}: key '{self._name(key)}': expected {expected}, {received}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is ...:
                raise self._fail(key, expected or _type_name(kind))
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise self._fail(key, expected or _type_name(kind), value)
        return value

    def number(self, key: str, default: Any = ..., *, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self.get(key, float, default, expected=_range_text(minimum, maximum))
        if value is None or value is default:
            return value
        too_small = minimum is not None and value < minimum
        too_large = maximum is not None and value > maximum
        if not math.isfinite(value) or too_small or too_large:
            raise self._fail(key, _range_text(minimum, maximum), value)
        return value

    def integer(self, key: str, default: Any = ..., *, minimum: int | None = None) -> Any:
        value = self.get(key, int, default, expected=_range_text(minimum, None, "an integer"))
        if value is not None and value is not default and minimum is not None and value < minimum:
            raise self._fail(key, _range_text(minimum, None, "an integer"), value)
        return value

    def choice(self, key: str, choices: list[str] | tuple[str, ...], default: Any = ...) -> Any:
        expected = "one of " + ", ".join(repr(c) for c in choices)
        value = self.get(key, str, default, expected=expected)
        if value is not default and value not in choices:
            raise self._fail(key, expected, value)
        return value

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default, expected="a list of strings")
        if value is default:
            return value
        if not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def table(self, key: str, required: bool = True) -> Table:
        value = self.get(key, dict, ... if required else {}, expected="a table")
        return Table(value, self.file, self._name(key))

    def done(self) -> None:
        extra = sorted(set(self.data) - self._seen)
        if extra:
            known = ", ".join(sorted(self._seen))
            raise UsageError(f"{self.file}: unknown key '{self._name(extra[0])}'; valid keys here: {known}")


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds if k is not type(None))


def _range_text(minimum: float | None, maximum: float | None, noun: str = "a number") -> str:
    if minimum is not None and maximum is not None:
        return f"{noun} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{noun} >= {minimum:g}"
    return noun
