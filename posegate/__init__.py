"""posegate: stage-by-stage validation of human-pose model ports (the shared machinery)."""
__version__ = "0.1.0"
