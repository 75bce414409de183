"""llmspec: measure which local LLM and quantization fits this machine and these use cases."""

__version__ = "0.1.0"
