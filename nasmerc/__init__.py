"""nasmerc: neural architecture search for multimodal emotion recognition in conversation."""

__version__ = "0.1.0"
