"""Stand-ins for an isolated trial's process (``aebench.run.isolation._child``), importable in
the spawned child: each takes ``_child``'s arguments and ends the way a broken trial can."""

import sys
import time


def exits_slowly_after_closing_its_pipe(trial, device, output, connection, parent, threads):
    """A process that stops talking, then takes a moment to exit with status 3: as Python does
    when something raises SystemExit outside the trial's guard (its exit hooks, its threads)."""
    connection.close()
    time.sleep(0.5)
    sys.exit(3)
