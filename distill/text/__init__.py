"""Text models: prompted language models, their data and decoding (the ``text`` extra: transformers)."""
