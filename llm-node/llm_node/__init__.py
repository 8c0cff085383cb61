"""llm-node: an OpenAI-compatible HTTP service for one GGUF model on CPU (gpt4all bindings)."""

__version__ = "1.0.0"
