"""Pruning training (schedule, usage loss, epoch and phase loops) and evaluation of the AdaViT model."""
