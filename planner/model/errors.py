"""The one base of every error vplan raises on purpose.

``VplanError`` is what a caller catches to tell vplan's own refusals (bad input, a refused output path, a plan file
of another format, a host capture it cannot read, a plan that failed the checker) from anything else. Each stage
keeps its own subclass, named after what went wrong, next to the code that raises it (``ScenarioError``,
``OutputError``, ``CaptureError``, ``PlanFileError``, ``ApplyError``, ``PlanBug``...); those that have always been
``ValueError`` or ``RuntimeError`` stay so. Every message names the file, the key or item and what is wrong; none
echoes file content. Errors with several problems keep them, one message each, in ``problems``.
"""

from __future__ import annotations


class VplanError(Exception):
    """Base of vplan's errors."""
