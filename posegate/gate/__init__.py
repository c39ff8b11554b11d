"""The CI gate: baselines, throughput comparisons, the machine fingerprint, the session report.

It judges what the pipeline produced, so it sits at the top: nothing below imports it (shards and the progress
line, which the pipeline and training use, live in posegate.pipeline)."""
