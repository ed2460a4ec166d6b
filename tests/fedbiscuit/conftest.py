"""Fixtures shared with the privacy tests: the ledger-signing federation PKI."""

from tests.privacy.conftest import ledger_pki  # noqa: F401 (re-exported fixture)
