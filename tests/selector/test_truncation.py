"""What a selector reads of a long pair: the answers, then the last turns of the prompt."""

from __future__ import annotations

import pytest

from selector.data import PairEncoder, PreferencePair
from selector.truncation import fit_pair, head_and_tail


def test_short_pairs_are_kept_whole() -> None:
    assert fit_pair([1, 2], [3], [4, 5], window=10) == ([1, 2], [3], [4, 5])


def test_long_prompt_keeps_its_end_and_both_sides_read_the_same_prompt() -> None:
    prompt = list(range(100))
    prompt_kept, chosen, rejected = fit_pair(prompt, [200, 201], [300], window=20)
    assert prompt_kept == list(range(82, 100))  # the last 18 = 20 - the longer answer
    assert (chosen, rejected) == ([200, 201], [300])


def test_long_answers_keep_head_and_tail_and_the_prompt_keeps_a_quarter() -> None:
    prompt, answer = list(range(100)), list(range(1000, 1100))
    prompt_kept, chosen, rejected = fit_pair(prompt, answer, [7], window=40)
    assert prompt_kept == list(range(90, 100))  # 40 // 4 = 10 last prompt tokens
    assert chosen == answer[:20] + answer[-10:]  # 30 tokens: 2/3 head, 1/3 tail
    assert rejected == [7]
    assert len(prompt_kept) + len(chosen) <= 40


def test_head_and_tail_never_exceeds_the_limit() -> None:
    ids = list(range(50))
    for limit in range(0, 60):
        kept = head_and_tail(ids, limit)
        assert len(kept) == min(limit, 50)
        if 0 < limit < 50:
            assert kept[0] == 0 and kept[-1] == (49 if limit > 1 else 0)


def test_a_window_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        fit_pair([1], [2], [3], window=0)


def test_encoder_keeps_the_final_turns_and_the_differing_answers(tiny_encoder: PairEncoder) -> None:
    tokenizer = tiny_encoder.tokenizer
    first_turn = "Human: " + "tell me a long story about the sea " * 40
    last_turn = "Human: which colour is the sky"
    pair = PreferencePair(
        prompt=f"{first_turn}\n\nAssistant: ok\n\n{last_turn}\n\nAssistant:",
        chosen="blue on a clear day",
        rejected="green always",
    )
    batch = PairEncoder(tokenizer, max_tokens_per_answer=32).encode([pair])
    width = batch.input_ids.shape[1] // 2
    side_a = tokenizer.decode(batch.input_ids[0, :width], skip_special_tokens=True)
    side_b = tokenizer.decode(batch.input_ids[0, width:], skip_special_tokens=True)
    assert "which colour is the sky" in side_a and "which colour is the sky" in side_b
    assert side_a.endswith("blue on a clear day") and side_b.endswith("green always")
    assert int((batch.half_ids[0] == 0).sum()) <= 32
