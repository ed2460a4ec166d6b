"""The token window suggested from a silo's own length statistics."""

from __future__ import annotations

from selector.data import PairEncoder, PreferencePair
from selector.token_budget import MIN_WINDOW, LengthStatistics, length_statistics, suggested_window


def _stats(answer_p90: int) -> LengthStatistics:
    return LengthStatistics(
        pairs=10, prompt_median=50, prompt_p90=200, answer_median=20, answer_p90=answer_p90
    )


def test_window_fits_the_long_answers_beside_a_quarter_of_prompt() -> None:
    # 96 answer tokens need 128 text tokens (3/4 of them); 3 special tokens; round up to 16.
    assert suggested_window(_stats(96), limit=256, special_tokens=3) == 144
    assert suggested_window(_stats(96), limit=128, special_tokens=3) == 128


def test_short_answers_get_the_minimum_window() -> None:
    assert suggested_window(_stats(5), limit=256, special_tokens=3) == MIN_WINDOW


def test_statistics_count_tokens_of_prompts_and_both_answers(tiny_encoder: PairEncoder) -> None:
    pairs = [
        PreferencePair("one two three", "yes", "no no no no"),
        PreferencePair("one", "yes yes", "no"),
    ]
    stats = length_statistics(pairs, tiny_encoder.tokenizer)
    assert stats.pairs == 2
    assert stats.prompt_p90 >= stats.prompt_median >= 1
    assert stats.answer_p90 >= 4 - 1  # the longest answer has four words
    assert "2 pairs" in stats.describe()
