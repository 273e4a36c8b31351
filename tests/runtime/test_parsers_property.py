"""Property tests: the bind and env-script parsers on arbitrary input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from capsa.errors import UsageError
from capsa.runtime import env
from capsa.runtime.binds import parse_binds

_PATH_CHARS = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_PATH_CHARS, max_size=60))
def test_bind_parser_only_raises_usage_errors(value: str) -> None:
    try:
        binds = parse_binds([value], "/work")
    except UsageError:
        return
    for bind in binds:
        assert bind.source.startswith("/") and bind.dest.startswith("/")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcXYZ/_-.", min_size=1, max_size=12).map(lambda s: "/" + s),
                min_size=1, max_size=4),
       st.booleans())
def test_bind_round_trip(paths: list[str], readonly: bool) -> None:
    spec = ",".join(f"{p}:{p}{':ro' if readonly else ''}" for p in paths)
    binds = parse_binds([spec], "/")
    assert [b.readonly for b in binds] == [readonly] * len(paths)
    assert len(binds) == len(paths)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_env_parser_never_fails_and_sets_only_names(text: str) -> None:
    values: dict[str, str] = {"KEEP": "1"}
    env.apply_env_script(text, values)
    for name in values:
        assert name.replace("_", "a").isalnum()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00\n\r'"), max_size=40))
def test_single_quoted_values_are_literal(value: str) -> None:
    values: dict[str, str] = {}
    env.apply_env_script(f"export V='{value}'", values)
    assert values["V"] == value


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00",
                                      blacklist_categories=("Cs",)), max_size=30))
def test_expandable_words_only_expand_variables(value: str) -> None:
    """What /bin/sh makes of an injected value: the value itself, with only
    ``$NAME`` references replaced (here all unset, so removed)."""
    import subprocess

    word = env._expandable(value)
    done = subprocess.run(["/bin/sh", "-c", f"printf %s {word}"], capture_output=True,
                          env={}, check=False)
    assert done.returncode == 0
    expected = env.reference_regex().sub(
        lambda m: m.group(0)[m.group(0).index(":-") + 2:-1] if ":-" in m.group(0) else "", value)
    assert done.stdout.decode("utf-8", "surrogateescape") == expected
