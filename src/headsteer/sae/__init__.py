"""Top-k sparse autoencoder (Eqs. 2-4) and its training."""
