"""The names of the preference data formats and of the bad-row policies, without the readers.

Kept apart from `selector.formats` (which imports torch through `selector.data`) so config
models can name a format without loading the model stack.
"""

from typing import Literal

PairFormat = Literal["jsonl", "hh-rlhf", "shp", "summarize-from-feedback"]
BadRows = Literal["skip", "fail"]
