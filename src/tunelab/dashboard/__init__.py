"""``tunelab dashboard``: a local, read-only web app over a storage's studies.

Pages list the studies, show one study (summary, a sortable, filterable, paged trial table and its
figures, refreshed while it runs) and one trial (its reports, curves and files). It only reads.

Example:
    >>> from tunelab.dashboard import serve
    >>> serve("sqlite:///tunelab.db", port=8080)  # doctest: +SKIP
"""

from __future__ import annotations

from tunelab.dashboard.app import create_app, serve

__all__ = ["create_app", "serve"]
