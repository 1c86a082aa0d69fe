"""``geopix_tiles.plot``: the public name of the plotting helpers (``overlay``, ``explore``, ...).

They live in :mod:`geopix_tiles.interfaces.plot`; this module keeps the documented import
(``from geopix_tiles.plot import overlay``) short.
"""
from .interfaces.plot import *  # noqa: F401,F403
from .interfaces.plot import __all__  # noqa: F401
