"""livelog: stream workflow logs to browsers in real time."""

__version__ = "0.1.0"
