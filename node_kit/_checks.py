"""Every argument check in one place: integers, reals, booleans and choices.

Each check raises a `ValueError` that names the argument, says what was expected and
what was given, and ends with the fix where there is one. NumPy scalars count as
numbers (`np.int64(3)` is an int); `bool` never does (`True` is not the integer 1 here).
Times and states of a solve are checked in `_solve_inputs.py`, series in `_irregular.py`.
"""

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TYPE_CHECKING, TypeGuard, TypeVar


if TYPE_CHECKING:
    from jax import Array


_T = TypeVar("_T")


def is_int(value: Any) -> TypeGuard[int]:
    """`True` for a Python or NumPy integer that is not a `bool`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> TypeGuard[float]:
    """`True` for a Python or NumPy real number (int or float) that is not a `bool`."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_phrase(minimum: int) -> str:
    if minimum == 1:
        return "a positive int"
    if minimum == 0:
        return "a non-negative int"
    return f"an int >= {minimum}"


def _fail(name: str, expected: str, value: Any, *, show_name: bool, fix: str) -> None:
    shown = f"{name}={value!r}" if show_name else repr(value)
    fix = f" {fix}" if fix else ""
    quoted = name if name.startswith("--") else f"`{name}`"  # a flag, as the user typed it
    raise ValueError(f"{quoted} must be {expected}; got {shown}.{fix}")


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    expected: str | None = None,
    show_name: bool = False,
    fix: str = "",
) -> int:
    """Check that `value` is an int in `[minimum, maximum]`; return it as a Python int.

    **Arguments:**

    - `name`: the argument's name, as the user wrote it (`"width_size"`, or a flag
        `"--steps"`, which the message shows without backticks).
    - `value`: what was given.
    - `minimum`, `maximum`: the allowed range (`maximum=None`: unbounded).
    - `expected`: the phrase after "must be" (default: "a positive int",
        "a non-negative int" or "an int >= m").
    - `show_name`: write "got name=value" instead of "got value".
    - `fix`: a sentence appended to the message, telling the user what to pass.
    """
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        if expected is None:
            expected = _int_phrase(minimum)
            if maximum is not None:
                expected = f"an int in [{minimum}, {maximum}]"
        _fail(name, expected, value, show_name=show_name, fix=fix)
    return int(value)


def check_optional_int(name: str, value: Any, **kwargs: Any) -> int | None:
    """Like [`check_int`][] but `None` passes through."""
    return None if value is None else check_int(name, value, **kwargs)


def check_ints(minimum: int = 1, /, **values: Any) -> tuple[int, ...]:
    """Check several ints against one minimum; return them as Python ints, in order.

    E.g. `width, depth = check_ints(0, width_size=w, depth=d)`.
    """
    return tuple(
        check_int(name, value, minimum=minimum, expected=f"an int >= {minimum}")
        for name, value in values.items()
    )


def check_real(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    non_negative: bool = False,
    upper: float | None = None,
    finite: bool = True,
    expected: str | None = None,
    show_name: bool = False,
    fix: str = "",
) -> float:
    """Check a real number (optionally `> 0`, `>= 0`, or `<= upper`); return it as a float.

    Arguments as for [`check_int`][]; NaN always fails, and so does inf unless
    `finite=False` (the message then adds "(not inf)").
    """
    ok = is_real(value) and value == value
    infinite = ok and finite and math.isinf(value)
    ok = ok and not infinite
    if ok and positive:
        ok = value > 0
    if ok and non_negative:
        ok = value >= 0
    if ok and upper is not None:
        ok = value <= upper
    if not ok:
        if expected is None:
            expected = (
                "a positive float"
                if positive
                else ("a non-negative float" if non_negative else "a real number")
            )
            expected += "" if upper is None else f" <= {upper}"
        if infinite:
            expected += " (not inf)"
        _fail(name, expected, value, show_name=show_name, fix=fix)
    return float(value)


def type_name(value: Any) -> str:
    """How a message names what was given: its type, or a class passed instead of an instance."""
    if isinstance(value, type):
        return f"the class {value.__name__} (pass an instance: {value.__name__}(...))"
    return type(value).__name__


def check_callable(name: str, value: _T, *, expected: str = "a callable") -> _T:
    """Check that `value` can be called (a function, a module, `jax.nn.relu`, ...)."""
    if not callable(value):
        raise ValueError(f"`{name}` must be {expected}; got {type_name(value)} {value!r}.")
    return value


def check_callables(name: str, value: Any, *, expected: str) -> tuple:
    """Check that `value` is a list or tuple of callables (each like `expected`); a tuple."""
    must = f"`{name}` must be a list or tuple of callables {expected}"
    if callable(value):
        function = getattr(value, "__name__", "f")
        raise ValueError(
            f"{must}; got one {type_name(value)}. Wrap it in a list: {name}=[{function}]."
        )
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{must}; got {type_name(value)} {value!r}. E.g. {name}=[print].")
    for index, item in enumerate(value):
        if not callable(item):
            raise ValueError(
                f"{must}; got {name}[{index}]={item!r} ({type_name(item)}), which is not callable."
            )
    return tuple(value)


def as_array(name: str, value: Any, expected: str) -> "Array":
    """`jnp.asarray(value)`, or a `ValueError` naming `name` if it is no numeric array.

    `None`, strings and ragged lists fail inside JAX with a message that names no
    argument; this one says which argument and what it must be.
    """
    import jax.numpy as jnp

    try:
        array = jnp.asarray(value)
    except (TypeError, ValueError):
        array = None
    if array is None or not (jnp.issubdtype(array.dtype, jnp.number) or array.dtype == bool):
        raise ValueError(f"`{name}` must be {expected}; got {type_name(value)} {value!r:.60}.")
    return array


def check_bool(name: str, value: Any, *, why: str = "") -> bool:
    """Check a Python `bool` (not a traced or NumPy array)."""
    if not isinstance(value, bool):
        why = f" ({why})" if why else ""
        raise ValueError(f"`{name}` must be a Python bool{why}; got {type(value).__name__}.")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str], *, what: str = "") -> str:
    """Check that `value` is one of `choices` (strings, listed in the message)."""
    choices = tuple(choices)
    if value not in choices:
        what = f" {what}" if what else ""
        raise ValueError(f"unknown{what} {name} {value!r}; expected one of {', '.join(choices)}.")
    return value


def check_key(name: str, key: Any) -> "Array":
    """Check a JAX PRNG key: a typed key (`jax.random.key`) or a raw `uint32[..., 2]` one.

    Works on traced keys too (it looks at the dtype and shape only).
    """
    import jax
    import jax.numpy as jnp

    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and shape is not None and len(shape) >= 1 and shape[-1] == 2
    if not (typed or raw):
        shown = (
            f"{type(key).__name__} {key!r}"
            if dtype is None
            else f"an array of {dtype}{tuple(shape or ())}"
        )
        raise ValueError(
            f"`{name}` must be a JAX PRNG key; got {shown}. Make one with "
            f"`jax.random.key(0)`, and split it for each use."
        )
    return key


def _file_in_the_way(*paths: Path) -> Path | None:
    """The first of `paths` that exists and is not a folder (a file where a folder must be)."""
    return next((p for p in paths if p.exists() and not p.is_dir()), None)


def check_folder_path(shown: str, path: Any, *, purpose: str, fix: str) -> Path:
    """`path` as a `Path` for a folder of `purpose`: a non-empty str or `os.PathLike`, and
    neither a file nor below one (it need not exist yet). `shown` is the argument as the
    message names it (`` `data_dir` `` or `--out`); `fix` ends each message."""
    if not isinstance(path, str | os.PathLike) or not str(os.fspath(path)).strip():
        raise ValueError(f"{shown} must name a folder for {purpose}; got {path!r}. {fix}")
    folder = Path(path)
    blocking = _file_in_the_way(folder, *folder.parents)
    if blocking is not None:
        where = "is" if blocking == folder else f"lies below {str(blocking)!r}, which is"
        raise ValueError(
            f"{shown} must name a folder for {purpose}; {str(folder)!r} {where} a file. {fix}"
        )
    return folder


def make_folder(folder: Path, shown: str) -> Path:
    """Create `folder` (and its parents) if need be; a `ValueError` naming `shown` (the
    argument) if this process cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"{shown}: cannot create the folder {str(folder)!r} ({error.strerror or error}). "
            "Choose a folder this process can write to."
        ) from None
    return folder


def check_file_path(name: str, path: Any, *, example: str = "checkpoint.eqx") -> Path | None:
    """`None`, or `path` as a `Path` naming a file: not a folder, and not below a file."""
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise ValueError(
            f"`{name}` must be a file path (a str or pathlib.Path) or None; got "
            f"{type_name(path)} {path!r}."
        )
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"`{name}` must name a file; got {str(path)!r}, which is a folder. Name a file in "
            f"it, e.g. {str(path / example)!r}."
        )
    blocking = _file_in_the_way(*path.parents)
    if blocking is not None:
        raise ValueError(
            f"`{name}` {str(path)!r} lies below {str(blocking)!r}, which is a file, not a "
            "folder. Choose a path inside a folder."
        )
    return path
