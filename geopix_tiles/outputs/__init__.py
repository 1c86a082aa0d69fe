"""Probabilities to files: GeoTIFF/COG rasters, vectorised polygons, vector formats."""
