"""controlsprint: run a ControlNet sprint end to end in JAX.

Importing the package is cheap on purpose: nothing here imports jax, torch, mediapipe or gradio.
Sub-packages load their heavy dependencies when they are used.
"""

__version__ = "0.1.0"

from controlsprint.errors import UserError  # noqa: E402  (the one public error type)

__all__ = ["UserError", "__version__"]
