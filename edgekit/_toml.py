"""Reading the TOML data files (targets/, models/) strictly: unknown keys and wrong types are errors
that name the file, the key and what was expected."""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError, require_file, unknown_name

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
        return require_file(path, f"{noun} file", f"give the .toml file in it (`{list_command}` lists the built-in "
                            "ones)")
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
    so that `done()` can reject the keys nobody asked for (a typo must not pass silently). A table whose
    keys are declared with `only()` names a misspelt key even where it leaves a required one missing."""

    def __init__(self, data: Mapping[str, Any], file: Path, where: str = ""):
        self.data, self.file, self.where = data, file, where
        self._seen: set[str] = set()
        self._keys: tuple[str, ...] | None = None
        self._valid = "valid keys here"

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def only(self, *keys: str, valid: str = "valid keys here") -> Table:
        """Declare every key the table may hold, so that a required key found missing is first checked against
        the unknown ones: `clokc_mhz` is reported as an unknown key that means `clock_mhz`, not as a missing
        `clock_mhz`. `valid` introduces the list of keys in that message."""
        self._keys, self._valid = keys, valid
        return self

    def _unknown(self, key: str, meant: str | None) -> UsageError:
        hint = f"did you mean '{self._name(meant)}'? " if meant else ""
        valid = ", ".join(sorted(self._keys if self._keys is not None else self._seen)) or "none"
        return UsageError(f"{self.file}: unknown key '{self._name(key)}'; {hint}{self._valid}: {valid}")

    def _missing(self, key: str, expected: str) -> UsageError:
        """A required key is absent: an unknown key close to it is the likelier fault, and named instead."""
        unknown = [k for k in self.data if self._keys is not None and k not in self._keys]
        close = difflib.get_close_matches(key, unknown, n=1)
        return self._unknown(close[0], key) if close else self._fail(key, expected)

    def _fail(self, key: str, expected: str, got: Any = None) -> UsageError:
        received = "missing" if got is None else f"got {got!r}"
        return UsageError(f"{self.file}: key '{self._name(key)}': expected {expected}, {received}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        self._seen.add(key)
        if key not in self.data:
            if default is ...:
                raise self._missing(key, expected or _type_name(kind))
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

    def like(self, key: str, example: Any, choices: Sequence[str] = ()) -> Any:
        """A value of the type of `example` (a default), or `example` when the key is absent: one of `choices`
        when there are any, a list of `example`'s item type for a tuple or list, true or false, an integer, a
        number (an integer too) or a string; anything when `example` is None."""
        if choices:
            return self.choice(key, tuple(choices), example)
        if example is None:
            self._seen.add(key)
            return self.data.get(key)
        if not isinstance(example, tuple | list):
            kind = type(example) if isinstance(example, bool | int | float | str) else object
            return self.get(key, kind, example, expected=f"{_type_name(kind)} (like {_toml_text(example)})")
        item = type(example[0]) if example else object
        expected = f"a list of {_PLURALS.get(item, 'values')} (like {_toml_text(example)})"
        value = self.get(key, list, example, expected=expected)
        if value is not example and not all(_is_a(v, item) for v in value):
            raise self._fail(key, expected, value)
        return value

    def done(self) -> None:
        extra = sorted(set(self.data) - self._seen)
        if extra:
            valid = self._keys if self._keys is not None else self._seen
            close = difflib.get_close_matches(extra[0], valid, n=1)
            raise self._unknown(extra[0], close[0] if close else None)
        if self._keys is not None and not self._seen <= set(self._keys):  # a reader out of step with only()
            raise RuntimeError(f"{self.file}: read undeclared keys {sorted(self._seen - set(self._keys))}")


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds if k is not type(None))


_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "true or false values"}


def _is_a(value: Any, kind: type) -> bool:
    """`value` is of `kind` as a TOML reader means it: true is no integer, an integer is a number."""
    if isinstance(value, bool):
        return kind in (bool, object)
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def _toml_text(value: Any) -> str:
    """`value` as it is written in TOML: [16, 32], "softmax", true."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _range_text(minimum: float | None, maximum: float | None, noun: str = "a number") -> str:
    if minimum is not None and maximum is not None:
        return f"{noun} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{noun} >= {minimum:g}"
    return noun
