"""Hostile input fixtures: every attack of issue "Security" as data and small
builders (``cases.CASES``), the forged events they use (``forge``) and the
frames they are sent in (``wire``)."""

from .cases import BY_NAME, CASES, MALLORY, SCHEMA, SILENT_CONNECTIONS, Attack, Case, Scene
from .wire import Target

__all__ = [
    "BY_NAME",
    "CASES",
    "MALLORY",
    "SCHEMA",
    "SILENT_CONNECTIONS",
    "Attack",
    "Case",
    "Scene",
    "Target",
]
