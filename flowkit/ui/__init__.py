"""Looking at the run history: tables for ``flowkit history`` and the ``flowkit ui`` web UI.

- :mod:`flowkit.ui.text`: runs and a run as text and JSON (the command line).
- :mod:`flowkit.ui.pages`: the HTML pages, built from the HTML report's views.
- :mod:`flowkit.ui.server`: the HTTP server (standard library, read-only).

Nothing here is imported by ``import flowkit``: the command line loads it when asked.
"""
