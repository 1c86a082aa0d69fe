"""Reading pixels: scenes (local, remote, STAC), DataArrays as scenes, atomic writes."""
