"""Privacy and security mechanisms: PKI, DP accounting, budget guard and the silo ledger."""
