"""STARS reimplementation."""

__version__ = "0.1.0"
