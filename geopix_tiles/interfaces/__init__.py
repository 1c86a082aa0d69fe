"""How people reach the engine: the CLI, xarray/pandas accessors, plots and maps."""
