"""Small helpers shared by the absl mains (train, evaluate, export)."""
