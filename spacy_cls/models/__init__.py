"""Finding and loading checkpoints, and what changes how a loaded encoder runs (quantisation)."""
