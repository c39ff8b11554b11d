"""How a model's data moves through a port, the contracts with its codec, and top-down crop geometry."""
