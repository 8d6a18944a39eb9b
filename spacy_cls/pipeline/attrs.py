"""Names of the custom attributes this package sets (installed by `extensions`)."""
# Per doc: the last-layer [CLS] row; per span: that of the span's text (pipeline.spans).
CLS_VECTOR = "cls_vector"
# Per spaCy token: last-layer attention from [CLS] (set by spacy_cls.explain.attention.cls_attention).
CLS_ATTENTION = "cls_attention"
# Per doc: the labels the component decided on (tuned thresholds, abstention; docs/decisions.md).
CLS_LABELS = "cls_labels"
# Per doc: how unsure the component is, 0..1 (margin or entropy; docs/decisions.md).
CLS_UNCERTAINTY = "cls_uncertainty"
