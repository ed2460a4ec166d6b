"""How updates are protected (plaintext, SecAgg+ masking, CKKS), one strategy per mode behind
one interface (base.py), chosen once from the plan; nothing else branches on the mode."""
