"""Training workflows: run folders, checkpoints, and the loops for each learning rule."""
