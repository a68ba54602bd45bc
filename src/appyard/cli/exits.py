"""Exit codes a pipeline can branch on, the same for every ``appyard`` command
(docs/cli.md):

====  ==============================================================================
0     done: the build completed, the command did what it was asked
1     failed: the build failed, the artifact is invalid, the server refused the request
2     usage error: an unknown option, a missing argument, a value out of range
3     blocking findings: a detection control blocked the build (or the local file)
4     timeout: ``--wait`` or ``--timeout`` ran out before the build ended
5     authentication or configuration: no or a refused token, no server URL, a server
      that cannot be reached, a data directory without a database
====  ==============================================================================
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
BLOCKING = 3
TIMEOUT = 4
CONFIG = 5
