"""Splitting long replies at safe points, in Telegram's UTF-16 units."""

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.text_split import split_text, utf16_units


def test_a_long_text_is_split_at_paragraphs_first():
    text = "а" * 3000 + "\n\n" + "б" * 3000

    parts = split_text(text, 4096)

    assert parts == ["а" * 3000, "б" * 3000]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(["а", "b", " ", "\n", "😀", "<", "&"]), min_size=0, max_size=9000))
def test_every_part_fits_and_nothing_but_cut_newlines_is_lost(text):
    parts = split_text(text, 4096)

    assert all(utf16_units(part) <= 4096 for part in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")
