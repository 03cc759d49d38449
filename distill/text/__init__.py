"""Text: pretrained language-model bases (:mod:`distill.text.bases`) and text data (:mod:`distill.text.data`).

``transformers`` is imported only when a base or tokenizer is loaded (the ``text`` extra), never by this package.
"""
