"""Distillation: a student trained on a teacher pipeline's soft cats (docs/distill.md).

`spacy_cls.TeacherCorpus.v1` (``corpus.py``) is a corpus reader for `spacy train`: it
reads unlabelled texts and, optionally, a gold corpus, gives each text the teacher's
scores at a temperature (``targets.py``), cached on disk by teacher and text
(``cache.py``) or read from `apply` output (``apply_scores.py``), and yields examples
whose cats are those soft targets, mixed with the gold cats by a weight alpha.
"""
