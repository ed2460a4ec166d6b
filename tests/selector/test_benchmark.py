from selector.benchmark import make_federated_dataset
from selector.data import PairEncoder


def test_same_seed_gives_the_same_federation():
    first = make_federated_dataset(3, 20, 5, seed=11)
    assert first == make_federated_dataset(3, 20, 5, seed=11)
    assert first != make_federated_dataset(3, 20, 5, seed=12)


def test_silos_are_named_and_sized_as_asked():
    data = make_federated_dataset(3, 20, 5, seed=0)
    assert list(data) == ["silo-1", "silo-2", "silo-3"]
    for silo, part in data.items():
        assert len(part.train) == 20 and len(part.test) == 5
        assert all(pair.silo == silo for pair in part.train + part.test)
        assert all(pair.chosen != pair.rejected for pair in part.train)
    assert data["silo-1"].train != data["silo-2"].train


def test_answers_fit_the_default_token_window(tiny_encoder: PairEncoder):
    pairs = [p for part in make_federated_dataset(2, 200, 0, seed=0).values() for p in part.train]
    longest = max(
        len(tiny_encoder.tokenizer(p.prompt, answer)["input_ids"])
        for p in pairs
        for answer in (p.chosen, p.rejected)
    )
    assert longest <= 40  # prompt + answer, special tokens included: nothing is truncated


def test_labels_mostly_follow_the_specificity_attribute():
    pairs = [p for part in make_federated_dataset(2, 300, 0, seed=0).values() for p in part.train]
    vague = ("do the usual things", "figure it out as you go", "try some stuff and see")
    contrasting = [
        p for p in pairs if any(v in p.chosen for v in vague) != any(v in p.rejected for v in vague)
    ]
    specific_wins = sum(not any(v in p.chosen for v in vague) for p in contrasting)
    assert specific_wins / len(contrasting) > 0.75
