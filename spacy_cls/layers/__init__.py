"""thinc layers: word pieces, the Hugging Face encoder, pooling, windows, cache, listener, head."""
