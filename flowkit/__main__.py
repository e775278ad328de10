"""``python -m flowkit``: the ``flowkit`` command (see :mod:`flowkit.cli`)."""

from flowkit.cli import main

raise SystemExit(main())
