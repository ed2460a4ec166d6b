"""The secagg tests' federation PKI (24 silo certificates), shared by the membership tests."""

from tests.privacy.secagg.conftest import federation

__all__ = ["federation"]
