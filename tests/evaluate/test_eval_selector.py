"""The Calico selector language (policy-semantics.md §3.2) and Kubernetes label selectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenter.evaluate.selector import (
    All,
    And,
    Eq,
    Global,
    Has,
    In,
    Ne,
    Not,
    NotIn,
    Or,
    SelectorError,
    from_label_selector,
    parse_selector,
    tokenize,
)

LABELS = {"app": "web", "tier": "frontend", "env": "prod", "team/owner": "payments"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app == 'web'", True),
        ('app == "web"', True),
        ("app == 'db'", False),
        ("app != 'db'", True),
        ("missing != 'x'", True),  # != matches an absent label
        ("missing == ''", False),
        ("app in {'web', 'db'}", True),
        ("app in {}", False),
        ("app not in {'web'}", False),
        ("missing not in {'x'}", True),  # not in matches an absent label
        ("has(app)", True),
        ("!has(app)", False),
        ("has( team/owner )", True),
        ("tier contains 'ront'", True),
        ("tier starts with 'front'", True),
        ("tier ends with 'end'", True),
        ("tier ends  with 'front'", False),
        ("missing contains ''", False),
        ("all()", True),
        ("", True),
        ("global()", False),  # only meaningful in a namespaceSelector
        ("!!has(app)", True),
        ("!(app == 'db')", True),
        ("team/owner == 'payments'", True),
        ("app in {'a', 'web',}", True),  # Calico accepts a trailing comma
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert parse_selector(text).match(LABELS) is expected


def test_precedence_or_lowest_then_and_then_not() -> None:
    sel = parse_selector("a == '1' || b == '2' && c == '3'")
    assert sel == Or((Eq("a", "1"), And((Eq("b", "2"), Eq("c", "3")))))
    assert sel.match({"a": "1"})
    assert not sel.match({"b": "2"})
    sel2 = parse_selector("(a == '1' || b == '2') && c == '3'")
    assert not sel2.match({"a": "1"})
    assert parse_selector("!a == '1' && b == '2'") == And((Not(Eq("a", "1")), Eq("b", "2")))
    assert parse_selector("!(a == '1' && b == '2')") == Not(And((Eq("a", "1"), Eq("b", "2"))))
    assert parse_selector("!!!has(a)") == Not(Has("a"))
    assert parse_selector("!!has(a)") == Has("a")


def test_string_literals_have_no_escapes() -> None:
    assert parse_selector(r"a == 'x\y'").match({"a": r"x\y"})
    assert parse_selector("a == \"it's\"").match({"a": "it's"})
    assert parse_selector("a == 'x||y'") == Eq("a", "x||y")


def test_keywords_are_labels_unless_followed_by_parenthesis() -> None:
    assert parse_selector("all == 'x'").match({"all": "x"})
    assert parse_selector("has == 'x'") == Eq("has", "x")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app = 'web'", "expected =="),
        ("app == web", "expected a quoted string"),
        ("app == 'web", "unterminated string"),
        ("app == 'a' &", "expected &&"),
        ("app == 'a' | b == 'c'", "expected ||"),
        ("(app == 'a'", "expected )"),
        ("app == 'a')", "unexpected"),
        ("app in 'a'", "expected set literal"),
        ("app in {'a' 'b'}", "expected }"),
        ("app", "expected an operator"),
        ("app starts 'x'", "expected an operator"),
        ("has(app", "no closing ')'"),
        ("has()", "no label name"),
        ("all(x)", "no closing ')'"),
        ("app == 'a' &&", "unexpected end"),
        ("&& app == 'a'", "unexpected"),
        ("app == 'a'\n&& b == 'c'", "unexpected character"),  # Calico: no newlines
        ("app ~= 'a'", "expected an operator"),
        ("ápp == 'a'", "unexpected character"),
    ],
)
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError, match=None) as info:
        parse_selector(text)
    assert fragment in str(info.value)


def test_tokenizer_columns_in_errors() -> None:
    with pytest.raises(SelectorError, match="column 6"):
        tokenize("a == é")


def test_namespace_selector_context_for_all_and_global() -> None:
    assert All().match({}, namespaced=True)
    assert not All().match({}, namespaced=False)
    assert Global().match({}, namespaced=False)
    assert not Global().match({"x": "y"}, namespaced=True)
    sel = parse_selector("global() || name == 'shop'")
    assert sel.match({}, namespaced=False)
    assert sel.match({"name": "shop"}, namespaced=True)
    assert not sel.match({"name": "other"}, namespaced=True)
    assert sel.uses_global()
    assert not parse_selector("all()").uses_global()


@pytest.mark.parametrize(
    "text",
    [
        "a == 'x' || (b == 'y' && !has(c))",
        "a in {'p', 'q'} && b not in {'r'}",
        "!(a == 'x' || b != 'y')",
        "t contains 'x' && t starts with 'y' && t ends with \"it's\"",
        "all()",
        "global() || has(k)",
    ],
)
def test_str_round_trips(text: str) -> None:
    node = parse_selector(text)
    assert parse_selector(str(node)) == node


_key = st.sampled_from(["a", "b", "c"])
_val = st.sampled_from(["x", "y"])
_leaf = st.one_of(
    st.builds(Eq, _key, _val),
    st.builds(Ne, _key, _val),
    st.builds(Has, _key),
    st.builds(In, _key, st.frozensets(_val, max_size=2)),
    st.builds(NotIn, _key, st.frozensets(_val, max_size=2)),
)
_tree = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.builds(Not, kids),
        st.builds(And, st.tuples(kids, kids)),
        st.builds(Or, st.tuples(kids, kids)),
    ),
    max_leaves=8,
)


@given(_tree, st.dictionaries(_key, _val))
def test_printed_selectors_parse_back_to_the_same_meaning(tree: Or, labels: dict[str, str]
                                                          ) -> None:
    assert parse_selector(str(tree)).match(labels) == tree.match(labels)


def test_label_selector_conversion() -> None:
    sel = from_label_selector({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    })
    assert sel.match({"app": "web", "env": "prod", "team": "a"})
    assert not sel.match({"app": "web", "env": "prod", "team": "a", "tier": "db"})
    assert not sel.match({"app": "web", "env": "prod", "team": "a", "legacy": "1"})
    assert not sel.match({"app": "web", "env": "dev", "team": "a"})
    assert from_label_selector({}) == All()
    assert from_label_selector(None) == All()
    assert from_label_selector({"matchLabels": None}) == All()
    assert from_label_selector({"matchLabels": {"n": 1, "b": True}}).match({"n": "1",
                                                                            "b": "true"})


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
         "not a valid selector operator"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "non-empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         "must be empty"),
        ({"matchLabels": {"bad key!": "x"}}, "invalid label key"),
        ({"matchLabels": {"a": "not valid!"}}, "invalid label value"),
        ({"matchLabel": {"a": "b"}}, "unknown field"),
    ],
)
def test_label_selector_errors(selector: dict[str, object], fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        from_label_selector(selector)
    assert fragment in str(info.value)
