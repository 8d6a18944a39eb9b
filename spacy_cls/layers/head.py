"""The classification head's output activations."""
from thinc.api import Model
from thinc.types import Floats2d


def sigmoid_logit_grad() -> Model[Floats2d, Floats2d]:
    """Element-wise sigmoid whose backprop expects the gradient of the loss with
    respect to the logits (``p - y`` for binary cross-entropy), the convention of
    thinc's ``Softmax_v2``. thinc's ``Logistic`` multiplies by the sigmoid's
    derivative instead (a squared-error gradient), which stalls on confident errors.
    """
    return Model("sigmoid_logit_grad", _forward)


def _forward(model: Model, X: Floats2d, is_train: bool):
    Y = model.ops.sigmoid(X)

    def backprop(dY: Floats2d) -> Floats2d:
        return dY

    return Y, backprop


# Set on the classifier model (saved with its weights) when the head compares docs with
# label descriptions or was fitted after the contrastive stage: the head then reads
# unit-length features, so that its logits are cosine similarities scaled by its weights.
NORMALIZE_FEATURES = "normalize_features"


def l2_normalize(ops, X: Floats2d):
    """Rows of X scaled to unit length, and the backprop of that scaling."""
    xp = ops.xp
    norms = xp.sqrt((X * X).sum(axis=1, keepdims=True))
    norms = xp.maximum(norms, 1e-12).astype(X.dtype)
    Y = X / norms

    def backprop(dY: Floats2d) -> Floats2d:
        return (dY - Y * (Y * dY).sum(axis=1, keepdims=True)) / norms

    return Y, backprop


def head_input(model: Model, features: Floats2d) -> Floats2d:
    """What the head of classifier `model` reads for encoder features (prediction)."""
    if model.attrs.get(NORMALIZE_FEATURES):
        return l2_normalize(model.ops, features)[0]
    return features
