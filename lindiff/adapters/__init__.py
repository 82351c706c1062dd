"""Adapters that connect other diffusion libraries to lindiff's exact oracle (optional extras)."""
