"""MkDocs hook: docstrings written for Python's help() read well on the site too.

flowkit's docstrings name other objects with reST roles (:class:`Task`), which
Markdown leaves as text before the code span; drop the role, keep the code,
show ``~flowkit.StateManager`` as Python's tools do (``StateManager``), and
end the paragraph before a literal block with one colon, not reST's two.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:\w+\.)*(\w+)</code>")
_LITERAL = re.compile(r"(?<=[\w)])::</p>")


def on_page_content(html: str, **_: Any) -> str:
    html = _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
    return _LITERAL.sub(":</p>", html)
