"""A small base policy for the synthetic benchmark: a real causal LM that writes its answers.

Alignment needs a policy whose answers vary in what the benchmark's people care about, so
that DPO has something to move and the oracle (selector/benchmark/oracle.py) can see the
move. This one is a tiny LLaMA-style causal LM over the benchmark's own words (a WordPiece
vocabulary of whole words, lower-cased like MiniLM's), trained briefly from scratch on
benchmark answers whose four attributes are drawn uniformly: the base policy writes
specific or vague, polite or curt, direct or hedged answers, with or without an example,
about equally often. It is saved with `save_pretrained` as any local causal LM is, so
`fedbiscuit align --policy` loads it like a real one. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM

from selector.benchmark.generator import ATTRIBUTES, answer_phrases, compose_answer, questions

__all__ = ["benchmark_prompts", "make_benchmark_policy"]

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _benchmark_texts() -> list[str]:
    texts = []
    for prompt in questions():
        phrases = answer_phrases(prompt)
        texts += [prompt, phrases.advice, f"For example, {phrases.example}."]
        texts += [*phrases.polite, *phrases.curt, *phrases.direct, *phrases.hedged]
        texts += phrases.vague
    return texts


def _tokenizer() -> BertTokenizerFast:
    """Whole-word WordPiece over the benchmark's words; [SEP] ends a prompt and an answer."""
    splitter = BertTokenizerFast(vocab={token: i for i, token in enumerate(_SPECIAL)})
    words: set[str] = set()
    for text in _benchmark_texts():
        pieces = splitter.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text.lower())
        words.update(piece for piece, _ in pieces)
    vocabulary = [*_SPECIAL, *sorted(words)]
    tokenizer = BertTokenizerFast(
        vocab={token: i for i, token in enumerate(vocabulary)}, do_lower_case=True
    )
    tokenizer.eos_token = "[SEP]"
    return tokenizer


def _training_rows(
    tokenizer: BertTokenizerFast, rng: np.random.Generator, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` "[CLS] prompt [SEP] answer [SEP]" rows (right-padded) and their answer masks."""
    prompts = questions()
    rows, masks = [], []
    for _ in range(count):
        prompt = prompts[int(rng.integers(len(prompts)))]
        answer = compose_answer(rng, prompt, rng.integers(0, 2, size=len(ATTRIBUTES)))
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        rows.append(prompt_ids + answer_ids + [tokenizer.eos_token_id])
        masks.append([0] * len(prompt_ids) + [1] * (len(answer_ids) + 1))
    width = max(map(len, rows))
    ids = torch.full((count, width), tokenizer.pad_token_id, dtype=torch.long)
    loss_mask = torch.zeros((count, width), dtype=torch.bool)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        loss_mask[i, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
    return ids, loss_mask


def make_benchmark_policy(
    folder: str | Path, seed: int = 0, steps: int = 300, batch_size: int = 64
) -> Path:
    """Train the base policy for `steps` steps (0: untrained, for fast tests) and save it
    (model and tokenizer) in `folder`; the same seed gives the same weights."""
    folder = Path(folder)
    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        model.train()
        for _ in range(steps):
            ids, answer = _training_rows(tokenizer, rng, batch_size)
            logits = model(input_ids=ids, attention_mask=ids != tokenizer.pad_token_id).logits
            targets = ids[:, 1:].masked_fill(~answer[:, 1:], -100)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def benchmark_prompts(copies: int) -> list[str]:
    """Every benchmark question `copies` times: the unlabeled prompts alignment samples for."""
    return [prompt for _ in range(copies) for prompt in questions()]
