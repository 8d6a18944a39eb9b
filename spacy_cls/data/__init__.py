"""Labelled data in: readers of TSV/CSV/JSONL/prefixed files, the .spacy converter, corpus readers for `spacy train`."""
