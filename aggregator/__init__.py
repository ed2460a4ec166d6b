"""The aggregator service: rpc/ (gRPC edge), rounds/ (round state machine, FedAvg), protection/
(plaintext, masking, HE strategies), store/ (durable state), ops/ (metrics, status)."""
