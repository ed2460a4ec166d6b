"""The silo's preference pairs, read once per run in its configured format.

Unusable rows are skipped by default and logged (how many, which lines, why; never their
content), so an institution's export with a few broken rows still trains; `data.bad_rows:
fail` refuses the file instead, and a mostly-bad file is refused either way.
"""

from __future__ import annotations

import logging

from selector.data import PreferencePair
from selector.formats import PairFile, read_pair_file
from silo.config import SiloConfig

log = logging.getLogger(__name__)


def read_training_file(config: SiloConfig) -> PairFile:
    """The silo's data file as its config says to read it, with the rows it skipped."""
    data = config.data
    return read_pair_file(data.train_path, data.format, data.bad_rows)


def read_training_pairs(config: SiloConfig) -> list[PreferencePair]:
    """The pairs the silo trains on; skipped rows are logged as a warning."""
    read = read_training_file(config)
    if read.skipped:
        log.warning(
            "federation=%s silo=%s %s", config.federation_id, config.silo_id, read.summary()
        )
    return read.pairs
