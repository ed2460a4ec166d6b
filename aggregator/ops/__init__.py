"""Operations: Prometheus metrics and their collectors, the admin status view, config check."""
