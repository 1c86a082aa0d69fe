"""The tiling engine: tile grid, scaling, blending, strip accumulation, the threaded pipeline, resume journal."""
