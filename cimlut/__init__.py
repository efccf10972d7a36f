"""cimlut: analog in-memory computing for language models, measurable from the transistor up."""

__version__ = "0.1.0"
