"""When a port fails: where (localisation, probes), what it costs, how to fix precision, a reduced reproducer."""
