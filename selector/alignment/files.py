"""The files of an alignment run: the prompt file it reads and what it keeps in `--out`.

`--out` holds `run.json` (the fingerprint of the inputs and config), `samples.json`
(completions per prompt), `pairs.json` (the selectors' labels), DPO checkpoints, the final
`adapter/` and `report.json`. Each stage's file is written atomically once the stage is
done, so an interrupted run resumes at the first unfinished stage, and only with the same
inputs: a different config, prompt file or selector set in the same folder is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protos.errors import FailedPrecondition, InvalidInput
from selector.alignment.base_policy import Completion
from selector.alignment.config import AlignConfig
from selector.alignment.labelling import LabelledPair, Labelling
from selector.formats._lines import json_objects, text

__all__ = [
    "claim_run",
    "read_labelling",
    "read_prompts",
    "read_samples",
    "write_json",
    "write_labelling",
    "write_samples",
]


def read_prompts(path: Path) -> list[str]:
    """Prompts of a JSONL file, one {"prompt": "..."} object a line; blank lines skipped."""
    prompts = []
    for where, record in json_objects(path):
        if set(record) != {"prompt"}:
            raise InvalidInput(f'{where}: expected an object with one field, {{"prompt": "..."}}')
        prompts.append(text(record, "prompt", where))
    if not prompts:
        raise InvalidInput(f'--prompts {path}: no prompts (one {{"prompt": ...}} per line)')
    return prompts


def write_json(path: Path, document: Any) -> None:
    """Write atomically: a reader (or a resumed run) sees the old file or the whole new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", "utf-8")
    os.replace(partial, path)


def _digest(paths: Sequence[Path]) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(str(path.name).encode() + b"\0" + path.read_bytes())
    return hasher.hexdigest()


def claim_run(out: Path, config: AlignConfig, selectors: Path, policy: Path, prompts: Path) -> None:
    """Record this run's fingerprint in `out`, or check it matches the run found there."""
    fingerprint = {
        "config": config.model_dump(mode="json"),
        "selectors_sha256": _digest(sorted(p for p in selectors.rglob("*") if p.is_file())),
        "policy": str(policy.resolve()),
        "prompts_sha256": _digest([prompts]),
    }
    path = out / "run.json"
    if path.is_file():
        found = json.loads(path.read_text("utf-8"))
        differing = sorted(k for k in fingerprint if found.get(k) != fingerprint[k])
        if differing:
            raise FailedPrecondition(
                f"--out {out} holds a run with a different {differing[0].split('_')[0]}; "
                "resume it with the same inputs, or choose a new --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, fingerprint)


def _completion(document: dict) -> Completion:
    return Completion(document["text"], tuple(document["token_ids"]))


def write_samples(path: Path, prompts: Sequence[str], samples: Sequence[Sequence[Completion]]):
    write_json(
        path,
        [
            {"prompt": p, "completions": [{"text": c.text, "token_ids": c.token_ids} for c in cs]}
            for p, cs in zip(prompts, samples, strict=True)
        ],
    )


def read_samples(path: Path) -> list[list[Completion]]:
    return [[_completion(c) for c in row["completions"]] for row in json.loads(path.read_text())]


def write_labelling(path: Path, labelling: Labelling) -> None:
    def completion(c: Completion) -> dict:
        return {"text": c.text, "token_ids": c.token_ids}

    write_json(
        path,
        {
            "candidates": labelling.candidates,
            "identical": labelling.identical,
            "ties_dropped": labelling.ties_dropped,
            "pairs": [
                {**vars(p), "chosen": completion(p.chosen), "rejected": completion(p.rejected)}
                for p in labelling.pairs
            ],
        },
    )


def read_labelling(path: Path) -> Labelling:
    document = json.loads(path.read_text("utf-8"))
    pairs = [
        LabelledPair(
            **{**p, "chosen": _completion(p["chosen"]), "rejected": _completion(p["rejected"])}
        )
        for p in document["pairs"]
    ]
    return Labelling(pairs, document["candidates"], document["identical"], document["ties_dropped"])
