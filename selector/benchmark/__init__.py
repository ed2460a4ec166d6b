"""The synthetic federated benchmark: data generator, oracle judge, tiny base LM, partitions."""
