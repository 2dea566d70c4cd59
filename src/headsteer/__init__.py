"""headsteer: ViTs that prune their own attention heads per image, steered through a sparse autoencoder."""

__version__ = "0.1.0"
