"""Many scenes and many machines: batch runs and the distributed runner."""
