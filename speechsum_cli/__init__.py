"""speechsum: make open audio LLMs into faithful speech summarizers, and run them."""

__version__ = "0.1.0"
