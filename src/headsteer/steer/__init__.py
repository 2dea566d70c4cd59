"""Steering the pruning through SAE latents: statistics, Eq. 5, the cached-tail sweep."""
