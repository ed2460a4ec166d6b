"""The gRPC edge: server, servicer, routing between hosted federations, silo authentication,
health, RPC metrics and the translation of domain errors into status codes."""
