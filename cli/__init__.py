"""The ``pixelcnn`` command line: train, evaluate, sample and compare PixelCNN++ models.

>>> from pixelcnnpp.cli import app, main  # the Typer app and the console-script entry point
"""

from .app import app, main

__all__ = ["app", "main"]
