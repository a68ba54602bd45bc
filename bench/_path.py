"""Imported first by every bench script, before anything that imports ``inspect``.

Run as ``python bench/X.py``, this folder comes first on ``sys.path``, and ``bench/inspect.py``
(the name issue 3 gives the inspection benchmark) would shadow the standard library's
``inspect``, which ``dataclasses``, ``typing`` users and most libraries import. Move the folder
to the end: the standard library wins, and ``_common`` is still found.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]
