"""Privacy and security mechanisms: PKI, DP accounting, budget guard, ledger (pure, no I/O loops)."""
