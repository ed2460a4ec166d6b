"""Round logic: the phase table (round_table), the machine that applies it (round_machine),
FedAvg, the budget schedule and the intake of silos' signed ledger entries."""
