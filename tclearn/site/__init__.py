"""The runtime of one site: its config file, the coalition opened from it, the node engine and the member job runner."""
