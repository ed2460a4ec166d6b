"""The DPO loss and its gradients match Rafailov et al.'s formula on hand-computed numbers."""

import math

import pytest
import torch

from selector.alignment.dpo import dpo_loss, sequence_logprobs
from selector.benchmark.tiny_lm import make_benchmark_policy


def _leaf(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float64, requires_grad=True)


def test_loss_and_gradients_match_the_formula_on_a_hand_computed_pair():
    # Policy gains 1 nat on the chosen answer over the reference and loses 0.5 on the rejected
    # one: h = (-1 - -2) - (-3 - -2.5) = 1.5; beta = 0.5 gives z = 0.75.
    chosen, rejected = _leaf(-1.0), _leaf(-3.0)
    loss = dpo_loss(chosen, rejected, torch.tensor([-2.0]), torch.tensor([-2.5]), beta=0.5)
    loss.sum().backward()

    # -log sigmoid(0.75) = log(1 + e^-0.75) = log(1.4723665527) = 0.3868...
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.75)), abs=1e-12)
    assert loss.item() == pytest.approx(0.386871, abs=1e-6)
    # dL/dlogpi(y_w) = -beta (1 - sigmoid(z)) = -0.5 * 0.3208213 = -0.1604107
    sigmoid = 1 / (1 + math.exp(-0.75))
    assert chosen.grad.item() == pytest.approx(-0.5 * (1 - sigmoid), abs=1e-12)
    assert chosen.grad.item() == pytest.approx(-0.160411, abs=1e-6)
    assert rejected.grad.item() == pytest.approx(-chosen.grad.item(), abs=1e-12)


def test_a_policy_equal_to_its_reference_costs_log_2_and_pushes_both_ways_by_beta_over_2():
    chosen, rejected = _leaf(-4.0), _leaf(-7.0)
    loss = dpo_loss(chosen, rejected, torch.tensor([-4.0]), torch.tensor([-7.0]), beta=0.1)
    loss.sum().backward()

    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)
    assert chosen.grad.item() == pytest.approx(-0.05, abs=1e-12)
    assert rejected.grad.item() == pytest.approx(0.05, abs=1e-12)


def test_a_kept_tie_is_symmetric_and_pulls_the_margin_to_zero():
    # h = 2, beta = 1, label 1/2: L = -(log s(2) + log s(-2)) / 2 = (log(1+e^-2) + log(1+e^2)) / 2
    chosen, rejected = _leaf(0.0), _leaf(-2.0)
    loss = dpo_loss(
        chosen,
        rejected,
        torch.tensor([0.0]),
        torch.tensor([0.0]),
        beta=1.0,
        labels=torch.tensor([0.5], dtype=torch.float64),
    )
    loss.sum().backward()

    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # dL/dh = -beta (1/2 - sigmoid(2)) = sigmoid(2) - 1/2 > 0: descent shrinks h.
    assert chosen.grad.item() == pytest.approx(1 / (1 + math.exp(-2)) - 0.5, abs=1e-12)
    assert rejected.grad.item() == pytest.approx(-chosen.grad.item(), abs=1e-12)


def test_label_one_is_plain_dpo_for_a_batch():
    policy = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.5, -1.0, -3.0])
    reference = torch.tensor([-1.2, -2.2, -0.7]), torch.tensor([-1.1, -1.3, -2.0])

    plain = dpo_loss(*policy, *reference, beta=0.3)
    labelled = dpo_loss(*policy, *reference, beta=0.3, labels=torch.ones(3))

    margin = (policy[0] - reference[0]) - (policy[1] - reference[1])
    assert torch.allclose(plain, torch.log1p(torch.exp(-0.3 * margin)))
    assert torch.allclose(labelled, plain)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = make_benchmark_policy(tmp_path_factory.mktemp("policy"), seed=1, steps=0)
    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


def test_sequence_logprobs_sum_the_completion_tokens_only_and_ignore_padding(policy):
    prompts, completions = [[2, 10, 11, 3], [2, 12, 3]], [[20, 21, 3], [22, 23, 24, 25, 26]]

    batched = sequence_logprobs(policy, prompts, completions, pad_id=0)

    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logprobs = torch.log_softmax(policy(input_ids=ids).logits[0].double(), dim=-1)
        expected = sum(
            logprobs[len(prompt) - 1 + t, token].item() for t, token in enumerate(completion)
        )
        assert batched[row].item() == pytest.approx(expected, abs=1e-4)
