"""Alignment after training: sample a base LLM, label pairs by the selectors, DPO-tune, judge."""
