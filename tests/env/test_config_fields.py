"""The config field checks: each refusal names the field and the reason; every value in range passes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.config_fields import check_at_least, check_open_unit, check_ordered, check_types


@dataclass(frozen=True)
class Example:
    flag: bool = True
    count: int = 3
    rate: float = 0.5
    pair: tuple[float, float] = (0.1, 0.9)
    label: str = "a"
    limit: int = 100

    def __post_init__(self) -> None:
        check_types(self)
        check_at_least(self, ("count",), 1)
        check_open_unit(self, ("rate",), closed_high=True)
        check_ordered(self, (("count", "limit"),))


@pytest.mark.parametrize("field, value, reason", [
    ("flag", 1, "expected a bool"),
    ("count", 2.0, "expected an integer"),
    ("count", True, "expected an integer"),
    ("count", 0, "must be >= 1"),
    ("rate", "x", "expected a number"),
    ("rate", float("inf"), "must be finite"),
    ("rate", 0.0, r"must lie in \(0, 1\]"),
    ("pair", (0.1,), "expected a tuple of 2 numbers"),
    ("pair", (0.1, float("nan")), "every value must be a finite number"),
    ("label", 3, "expected a string"),
    ("count", 100, r"must be < limit \(100\)"),
])  # fmt: skip
def test_refusal_names_field_and_reason(field: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: {reason}"):
        Example(**{field: value})


@given(count=st.integers(min_value=1, max_value=99), rate=st.floats(min_value=1e-12, max_value=1.0))
def test_values_in_range_pass(count: int, rate: float) -> None:
    assert Example(count=count, rate=rate).rate == rate
