"""The training engine: batching, optimiser, loop, checkpoints, tracking."""
