"""Data: tokenizers, corpora and the batch iterators that feed the training loop."""
