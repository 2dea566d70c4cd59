"""MkDocs hook (mkdocs.yml `hooks:`): pages generated from the code when the site is built.

`<!-- config-keys -->` in a page becomes the tables of every config key, its type, default and
docstring (`headsteer.config.docs.reference_markdown`), so the docs never drift from the dataclasses.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's headsteer

from headsteer.config.docs import reference_markdown  # noqa: E402

MARKER = "<!-- config-keys -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the generated key tables where a page asks for them."""
    return markdown.replace(MARKER, reference_markdown()) if MARKER in markdown else markdown
