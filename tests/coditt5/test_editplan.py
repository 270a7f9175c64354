"""Edit plans: the spec's worked example, round trips on random token sequences, malformed plans."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab.coditt5 import editplan
from jaxlab.core.errors import DataFormatError

tokens = st.lists(st.sampled_from(list("abcde") + ["x", "=", "(", ")"]), max_size=14)


def test_spec_example_exactly():
    out = editplan.build_output("x = f ( a )".split(), "x = f ( a ) ;".split())
    assert out == "<INSERT> ; <INSERT_END> <s> x = f ( a ) ;".split()


def test_replace_and_delete_spans_by_hand():
    plan = editplan.build_plan("a b c d".split(), "a x d".split())
    assert plan == "<REPLACE_OLD> b c <REPLACE_NEW> x <REPLACE_END>".split()
    assert editplan.build_plan("a b c".split(), "a c".split()) == "<DELETE> b <DELETE_END>".split()


@settings(deadline=None, max_examples=300)
@given(tokens, tokens)
def test_apply_parse_build_round_trip(a, b):
    plan = editplan.build_plan(a, b, keep=True)
    assert editplan.apply_plan(a, editplan.parse_plan(plan)) == b
    # the model's plan is the full plan without its KEEP spans
    no_keep = [op for op in editplan.parse_plan(plan) if op[0] != "equal"]
    assert editplan.parse_plan(editplan.build_plan(a, b)) == no_keep


@settings(deadline=None, max_examples=200)
@given(tokens, tokens)
def test_split_output_returns_the_target(a, b):
    plan, target = editplan.split_output(editplan.build_output(a, b))
    assert target == b and plan == editplan.build_plan(a, b)


@pytest.mark.parametrize("bad", [["<INSERT>", "a"], ["a", "<INSERT>", "b", "<INSERT_END>"],
                                 ["<REPLACE_OLD>", "a", "<REPLACE_END>"], ["<DELETE>", "<KEEP>", "<DELETE_END>"]])
def test_malformed_plans_are_rejected(bad):
    with pytest.raises(DataFormatError, match="edit plan"):
        editplan.parse_plan(bad)


def test_apply_rejects_a_plan_that_does_not_fit():
    ops = editplan.parse_plan(editplan.build_plan("a b".split(), "a c".split(), keep=True))
    with pytest.raises(DataFormatError, match="expects"):
        editplan.apply_plan("z b".split(), ops)
