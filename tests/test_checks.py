"""The one module of argument checks: what passes, what fails, and what the message says."""

import numpy as np
import pytest

from node_kit._checks import (
    as_array,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_real,
    is_int,
    is_real,
    type_name,
)


def test_numpy_scalars_are_numbers_and_bools_are_not():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0)
    assert is_real(0.5) and is_real(np.float32(0.5)) and is_real(2) and not is_real(False)
    assert check_int("n", np.int32(4)) == 4 and type(check_int("n", np.int32(4))) is int
    assert check_real("rate", np.float32(0.25), positive=True) == 0.25


@pytest.mark.parametrize(
    "kwargs, value, match",
    [
        ({}, 0, r"^`n` must be a positive int; got 0\.$"),
        ({}, True, r"^`n` must be a positive int; got True\.$"),
        ({"minimum": 0}, -1, r"^`n` must be a non-negative int; got -1\.$"),
        ({"minimum": 2}, 1, r"^`n` must be an int >= 2; got 1\.$"),
        ({"maximum": 3}, 4, r"^`n` must be an int in \[1, 3\]; got 4\.$"),
        ({"show_name": True, "fix": "Pass 8."}, 1.5, r"^`n` must be a positive int; got n=1\.5\. Pass 8\.$"),
    ],
)
def test_check_int_messages(kwargs, value, match):
    with pytest.raises(ValueError, match=match):
        check_int("n", value, **kwargs)


def test_check_real_bool_and_choice_messages():
    with pytest.raises(ValueError, match=r"^`rate` must be a positive float; got 0\.0\.$"):
        check_real("rate", 0.0, positive=True)
    with pytest.raises(ValueError, match=r"must be a positive float; got nan"):
        check_real("rate", float("nan"), positive=True)
    with pytest.raises(ValueError, match=r"^`p` must be a real number <= 1\.0; got 1\.5\.$"):
        check_real("p", 1.5, upper=1.0)
    with pytest.raises(ValueError, match=r"^`flag` must be a Python bool \(why\); got int\.$"):
        check_bool("flag", 1, why="why")
    with pytest.raises(ValueError, match=r"^unknown adjoint 'x'; expected one of a, b\.$"):
        check_choice("adjoint", "x", ("a", "b"))
    assert check_choice("adjoint", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^--steps must be a positive int; got 0\.$"):
        check_int("--steps", 0)


def test_inf_fails_unless_allowed_and_classes_are_named_as_classes():
    with pytest.raises(ValueError, match=r"^`rate` must be a positive float \(not inf\); got inf\.$"):
        check_real("rate", float("inf"), positive=True)
    assert check_real("rate", float("inf"), positive=True, finite=False) == float("inf")
    assert type_name(int) == "the class int (pass an instance: int(...))"
    assert type_name(3) == "int"
    with pytest.raises(ValueError, match=r"^`f` must be a callable; got str 'x'\.$"):
        check_callable("f", "x")
    with pytest.raises(ValueError, match=r"^`ts` must be times; got NoneType None\.$"):
        as_array("ts", None, "times")
    assert as_array("ts", [1, 2], "times").shape == (2,)
