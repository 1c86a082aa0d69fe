"""What the engine calls per batch of tiles: the Segmenter protocol, spectral models, the model registry."""
