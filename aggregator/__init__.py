"""The aggregator service: gRPC server, round state machine, FedAvg, durable store."""
