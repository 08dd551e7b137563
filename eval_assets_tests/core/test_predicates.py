"""Slice predicates are written by people in YAML and applied to every evaluation row.

They must read the way a person writes them (bare words are text, `in [a, b]`, and/or/not), select
exactly the rows they say, never match a missing value (not even under `not`), and never be able
to do anything but compare a column with literals: the parser is a whitelist, not eval().
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eval_assets.core.predicates import (
    BoolOp,
    Comparison,
    Not,
    PredicateError,
    evaluate_predicate,
    parse_predicate,
    predicate_columns,
)

FRAME = pd.DataFrame(
    {
        "amount": [50.0, 15000.0, 12000.0, np.nan, 9000.0, 20000.0],
        "country": ["US", "FR", "US", "DE", None, "GB"],
        "merchant_category": ["travel", "electronics", "grocery", "travel", "travel", "fuel"],
        "age_band": ["18-25", "26-40", "18-25", "41-65", "65+", "26-40"],
        "card_present": [1, 0, 0, 1, 0, 1],
    }
)


def rows(text: str) -> list[int]:
    return np.flatnonzero(evaluate_predicate(parse_predicate(text), FRAME)).tolist()


# --- what a predicate selects --------------------------------------------------------------------


def test_a_numeric_comparison_selects_the_matching_rows():
    assert rows("amount > 10000") == [1, 2, 5]
    assert rows("amount <= 9000") == [0, 4]
    assert rows("card_present == 0") == [1, 2, 4]
    assert rows("amount >= -1") == [0, 1, 2, 4, 5]


def test_a_bare_word_is_a_string():
    assert parse_predicate("country == US") == Comparison("country", "==", "US")
    assert rows("country == US") == [0, 2]


def test_a_quoted_value_keeps_characters_a_bare_word_cannot_have():
    assert parse_predicate("age_band == '18-25'") == Comparison("age_band", "==", "18-25")
    assert rows("age_band == '18-25'") == [0, 2]
    assert rows('age_band == "65+"') == [4]


def test_in_a_list_of_bare_words_selects_any_of_them():
    assert parse_predicate("merchant_category in [electronics, travel]") == Comparison(
        "merchant_category", "in", ("electronics", "travel")
    )
    assert rows("merchant_category in [electronics, travel]") == [0, 1, 3, 4]
    assert rows("merchant_category not in [electronics, travel]") == [2, 5]


def test_and_or_not_and_parentheses_combine_as_in_python():
    assert rows("amount > 10000 and country == US") == [2]
    assert rows("amount > 10000 or card_present == 0") == [1, 2, 4, 5]
    assert rows("not card_present == 0") == [0, 3, 5]
    assert rows("(country == US or country == FR) and amount > 10000") == [1, 2]
    assert rows("country == US or (country == FR and amount > 10000)") == [0, 1, 2]
    parsed = parse_predicate("not (a == 1 or b == 2)")
    assert isinstance(parsed, Not) and isinstance(parsed.operand, BoolOp)
    assert parsed.operand.op == "or"


def test_numbers_keep_their_type():
    assert parse_predicate("amount > 10000").value == 10000
    assert isinstance(parse_predicate("amount > 10000").value, int)
    assert parse_predicate("amount > 1.5e3").value == 1500.0
    assert parse_predicate("amount > -3").value == -3


def test_a_missing_value_never_matches_even_when_negated():
    # Row 3 has no amount and row 4 has no country.
    assert 3 not in rows("amount > 0")
    assert 3 not in rows("not amount > 0")
    assert 3 not in rows("amount != 5")
    assert 4 not in rows("country != US")
    assert 4 not in rows("not (country == US)")
    assert 4 not in rows("country not in [US, FR]")
    assert 3 not in rows("not (amount > 10000 or amount < 100)")


def test_an_unknown_value_does_not_hide_a_known_answer():
    # Row 3: amount is missing but card_present == 1 decides an `or` and `and` alone.
    assert 3 in rows("amount > 10000 or card_present == 1")
    assert 3 in rows("not (amount > 10000 and card_present == 0)")


@pytest.mark.parametrize(
    "text",
    [
        "country == US",
        "country != US",
        "country in [FR, GB]",
        "not country in [FR, GB]",
        "country >= FR",
        "country < 'GB' or merchant_category == travel",
    ],
)
def test_text_stored_as_categories_selects_the_same_rows_as_plain_text(text):
    # Stored predictions keep text slice keys as categories, with the missing value as code -1.
    categorical = FRAME.astype({"country": "category", "merchant_category": "category"})
    plain = evaluate_predicate(parse_predicate(text), FRAME)
    assert evaluate_predicate(parse_predicate(text), categorical).tolist() == plain.tolist()
    assert plain.any()


def test_predicate_columns_lists_every_column_read():
    predicate = parse_predicate("amount > 1 and (country == US or not card_present == 0)")

    assert predicate_columns(predicate) == {"amount", "country", "card_present"}


def test_comparing_a_numeric_column_with_text_is_a_clear_error():
    with pytest.raises(PredicateError, match="'amount'.*cannot be compared"):
        evaluate_predicate(parse_predicate("amount > big"), FRAME)


def test_a_column_missing_from_the_data_is_a_clear_error():
    with pytest.raises(PredicateError, match="'colour' is not in the data"):
        evaluate_predicate(parse_predicate("colour == red"), FRAME)


# --- what a predicate may not be -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/x')",  # a call
        "amount > len(country)",  # a call on the right
        "amount.real > 3",  # an attribute
        "country == os.sep",  # an attribute on the right
        "country[0] == U",  # a subscript
        "amount > (lambda: 3)()",  # a lambda
        "amount in [x for x in range(3)]",  # a comprehension
        "amount in {x for x in range(3)}",  # a set comprehension
        "0 < amount < 10",  # a chained comparison
        "3 < amount",  # a literal on the left
        "amount > 1 + 2",  # arithmetic
        "amount",  # a bare column
        "amount is None",  # identity
        "amount == None",  # None is no literal
        "amount > f'{1}'",  # an f-string
        "(x := 3) == 3",  # an assignment expression
        "amount in country",  # `in` without a list
        "amount == [1]",  # a list where a scalar is needed
        "",  # empty
        "amount >",  # not Python
    ],
)
def test_anything_but_a_column_compared_with_literals_is_rejected(text):
    with pytest.raises(PredicateError):
        parse_predicate(text)


def test_a_column_compared_with_another_known_column_is_rejected():
    columns = {"amount", "limit", "country"}

    with pytest.raises(PredicateError, match="'limit' is a column"):
        parse_predicate("amount > limit", columns=columns)
    with pytest.raises(PredicateError, match="'country' is a column"):
        parse_predicate("amount in [1, country]", columns=columns)
    with pytest.raises(PredicateError, match="'amount' is a column"):
        parse_predicate("amount == amount")
    # Quoting the word means the text.
    assert parse_predicate("country == 'limit'", columns=columns).value == "limit"


def test_a_very_long_predicate_is_refused():
    with pytest.raises(PredicateError, match="limited to"):
        parse_predicate(" or ".join(["amount > 1"] * 500))


def test_rejection_messages_quote_the_predicate_and_say_what_is_allowed():
    with pytest.raises(PredicateError) as caught:
        parse_predicate("__import__('os').system('id')")

    assert "__import__('os').system('id')" in str(caught.value)
    assert "column OP value" in str(caught.value)


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
@pytest.mark.parametrize("value", ["3", "2.5", "-1"])
def test_number_comparisons_in_numpy_equal_the_pandas_path(op, value):
    """Number columns against numbers are compared in numpy (the streamed slices' hot path);
    the same column as pandas' nullable dtype goes the general way: the masks must agree,
    missing values included, under `not` too."""
    floats = [0.5, 2.5, 3.0, np.nan, -1.0, 7.0, np.nan]
    frame = pd.DataFrame(
        {
            "f": np.array(floats),
            "f_nullable": pd.array(floats, dtype="Float64"),
            "i": np.array([0, 2, 3, 3, -1, 7, 9]),
            "i_nullable": pd.array([0, 2, 3, 3, -1, 7, 9], dtype="Int64"),
        }
    )
    for plain, general in (("f", "f_nullable"), ("i", "i_nullable")):
        for text in (f"{plain} {op} {value}", f"not ({plain} {op} {value})"):
            fast = evaluate_predicate(parse_predicate(text), frame)
            slow = evaluate_predicate(parse_predicate(text.replace(plain, general)), frame)
            np.testing.assert_array_equal(fast, slow, err_msg=text)
    assert not evaluate_predicate(parse_predicate(f"f {op} {value}"), frame)[[3, 6]].any()
