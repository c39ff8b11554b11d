"""The CI gate: baselines, throughput comparisons, the machine fingerprint, the session report, shards."""
