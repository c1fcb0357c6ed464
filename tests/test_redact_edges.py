"""Redaction's edges, exactly (core/redact.py): which values count as secrets, the order they are
masked in, a URL inside a masked password, redact_url and first_line. Pure and quick, so that
scripts/mutate judges redaction mutants in seconds."""

from __future__ import annotations

from core.redact import first_line, redact, redact_url


def test_a_secret_that_contains_another_is_masked_whole():
    # shortest first would leave "efgh", the rest of the longer secret, in the text
    assert redact("x abcdefgh y", ["abcd", "abcdefgh"]) == "x *** y"


def test_values_shorter_than_four_characters_are_not_treated_as_secrets():
    assert redact("abc is not a secret", ["abc", "", None]) == "abc is not a secret"
    assert redact("abcd is", ["abcd"]) == "*** is"


def test_a_url_inside_a_masked_password_does_not_stop_the_next_url_from_being_masked():
    text = "postgresql://u:p://v:w@db redis://:S3cretRd@cache"
    assert redact(text) == "postgresql://u:***@db redis://:***@cache"


def test_redact_url_masks_the_password_and_accepts_none():
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_url(None) == ""


def test_first_line_of_an_exception_or_its_type():
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(ValueError("")) == "ValueError"
