"""The selector model: backbones, LoRA adapters, pairwise preference loss, data and evaluation."""
