"""The wire contract: generated gRPC code, the plan, the tensor codec and error types.

The lowest layer: everything may import it, it imports nothing of ours.
"""
