"""Study names: checked once, before anything runs, because a name becomes a folder name."""

from __future__ import annotations

import re

from tunelab.errors import SpecError

__all__ = ["MAX_NAME_LENGTH", "check_study_name"]

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_study_name(name: object, field: str = "name") -> str:
    """``name`` if it can name a study (and its artifact folder), else a SpecError with the rule.

    Letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters:
    no path separators or '..', so artifacts can never be written outside their folder.

    Example:
        >>> check_study_name("digits-mlp")
        'digits-mlp'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        shown = repr(name) if len(repr(name)) <= 60 else f"{repr(name)[:40]}... ({len(name)} chars)"
        raise SpecError(
            field,
            f"must be letters, digits, '.', '_' or '-', starting with a letter or digit, at most "
            f"{MAX_NAME_LENGTH} characters; got {shown}; use e.g. 'digits-mlp'",
        )
    return name
