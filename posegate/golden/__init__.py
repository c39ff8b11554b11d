"""Golden files: upstream's recipe weights and inputs, and the decoder golden cases."""
