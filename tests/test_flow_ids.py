"""Flow selections: `all`, or IDs and inclusive ranges, kept as merged ranges and walked lazily."""

from __future__ import annotations

import itertools
import re

import pytest

from sync.core.selection import ALL, MAX_FLOW_ID, MIN_FLOW_ID, FlowSelection, is_flow_id, parse_flow_ids

BIGGEST_FLOW_ID = 2**63 - 1  # flow IDs are BIGINT in every table, and the API's flowId is refused beyond


def ids(*ranges: tuple[int, int]) -> FlowSelection:
    return FlowSelection(everything=False, ranges=ranges)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", ids((7, 7))),
        ("1,2,10-20", ids((1, 2), (10, 20))),
        (" 1 , 2 ,\t10 - 20 ", ids((1, 2), (10, 20))),
        ("10-20,1", ids((1, 1), (10, 20))),
        ("1-5,3-8", ids((1, 8))),
        ("1-5,6-8", ids((1, 8))),
        ("1-5,7-8", ids((1, 5), (7, 8))),
        ("1-10,2-3", ids((1, 10))),
        ("3,3,3", ids((3, 3))),
        ("5-5", ids((5, 5))),
        ("007", ids((7, 7))),
        (7, ids((7, 7))),
        ([1, 2, "10-20"], ids((1, 2), (10, 20))),
        (["30-40", 5, " 6 "], ids((5, 6), (30, 40))),
        pytest.param(range(4, 1, -1), ids((2, 4)), id="any-iterable"),
    ],
)
def test_ids_and_ranges_come_back_sorted_and_merged(value: object, expected: FlowSelection) -> None:
    """IDs and inclusive ranges are sorted, and overlapping or adjacent ranges merge into one."""
    assert parse_flow_ids(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["all", "ALL", "All", " aLL\n"])
def test_all_in_any_case_selects_everything(value: str) -> None:
    """`all`, in any case and with surrounding spaces, means every flow `/flow/list` returns."""
    selection = parse_flow_ids(value)
    assert selection == ALL
    assert selection.everything
    assert str(selection) == "all"


@pytest.mark.parametrize(
    ("value", "walked", "count"),
    [
        ("1-3,7,5", [1, 2, 3, 5, 7], 5),
        ("1-5,3-8", [1, 2, 3, 4, 5, 6, 7, 8], 8),
        ("9,9,9", [9], 1),
    ],
)
def test_iteration_walks_each_id_once_in_order(value: str, walked: list[int], count: int) -> None:
    """Iterating yields every selected ID once, in ascending order, and `len` counts them."""
    selection = parse_flow_ids(value)
    assert list(selection) == walked
    assert len(selection) == count


def test_a_huge_range_is_counted_and_walked_without_expanding_it() -> None:
    """`1-1000000000` costs nothing: `len` is arithmetic and iteration is lazy."""
    selection = parse_flow_ids("1-1000000000,2000000000-2999999999")
    assert len(selection) == 2_000_000_000
    assert list(itertools.islice(selection, 3)) == [1, 2, 3]
    assert selection.ranges == ((1, 1_000_000_000), (2_000_000_000, 2_999_999_999))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("all", "all"),
        ("7", "7"),
        ("1,2,10-20", "1-2,10-20"),
        ("20-10000, 3, 1-2", "1-3,20-10000"),
        ("5,7,9", "5,7,9"),
        ([1, "2-4", 8], "1-4,8"),
    ],
)
def test_str_is_the_canonical_form_and_parses_back(value: str | list[int | str], text: str) -> None:
    """`str()` gives the merged canonical form, and parsing it gives the same selection back."""
    selection = parse_flow_ids(value)
    assert str(selection) == text
    assert parse_flow_ids(str(selection)) == selection


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("", "''"),
        ("0", "'0'"),
        ("0-4", "'0-4'"),
        ("5-3", "'5-3'"),
        ("a", "'a'"),
        ("1,,2", "''"),
        ("1,", "''"),
        ("-3", "'-3'"),
        ("1-", "'1-'"),
        ("1-2-3", "'1-2-3'"),
        ("1.5", "'1.5'"),
        ("all,1", "'all'"),
        ("1,all", "'all'"),
        ([1, "x"], "'x'"),
        ([1, 2.5], "'2.5'"),
        (0, "'0'"),
    ],
)
def test_a_bad_part_raises_value_error_naming_it(value: str | int | list[object], named: str) -> None:
    """Anything but positive IDs and ascending ranges is a ValueError whose message quotes the bad part."""
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_flow_ids(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_flow_ids(value: bool) -> None:
    """A TOML `true` is a mistake, not flow 1."""
    with pytest.raises(ValueError, match="expected flow IDs"):
        parse_flow_ids(value)


def test_an_empty_list_selects_nothing_and_is_refused() -> None:
    """A TOML `flow_ids = []` is an error rather than a run over no flows."""
    with pytest.raises(ValueError, match="no flow IDs given"):
        parse_flow_ids([])


def test_the_largest_64_bit_id_is_accepted() -> None:
    """IDs go up to the BIGINT limit that the tables and the payload validation share."""
    assert list(parse_flow_ids(str(BIGGEST_FLOW_ID))) == [BIGGEST_FLOW_ID]


@pytest.mark.parametrize("value", [str(BIGGEST_FLOW_ID + 1), f"1-{BIGGEST_FLOW_ID + 1}", "1" * 30])
def test_ids_beyond_64_bits_are_refused(value: str) -> None:
    """A flow ID that no table can hold is a configuration error, caught before anything is contacted."""
    with pytest.raises(ValueError, match="64-bit"):
        parse_flow_ids(value)


@pytest.mark.parametrize("value", [-(2**63), -5, 0, 1, 7, BIGGEST_FLOW_ID, BIGGEST_FLOW_ID + 1, 10**30])
def test_explicit_ids_follow_the_one_rule_for_flow_ids(value: int) -> None:
    """An explicit ID is accepted exactly when `is_flow_id` holds: the rule listings and
    `history --flow-id` follow too."""
    assert is_flow_id(value) == (MIN_FLOW_ID <= value <= MAX_FLOW_ID)
    if is_flow_id(value):
        assert list(parse_flow_ids(str(value))) == [value]
    else:
        with pytest.raises(ValueError, match="flow ID"):
            parse_flow_ids(str(value))
