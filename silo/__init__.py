"""The silo agent: config and policy, local DP-SGD trainer, task loop and gRPC client."""
