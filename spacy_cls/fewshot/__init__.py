"""Few labels or none: a head built from label descriptions (zero-shot), and a
contrastive stage on the encoder followed by a fitted head (SetFit's recipe), both run
inside the components' `initialize` so that `spacy train` runs them before step 0
(docs/fewshot.md)."""
