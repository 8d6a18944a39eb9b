"""Many documents: classify files (or a Ray Dataset) into Parquet, on this machine or
on a Ray cluster. See docs/scale.md."""
from .predict import Predictor
from .run import apply
from .summary import Summary, load_summary


def __getattr__(name):
    # Ray is an optional extra: imported when apply_ray is first asked for.
    if name == "apply_ray":
        from .ray_engine import apply_ray

        return apply_ray
    raise AttributeError(name)


__all__ = ["Predictor", "Summary", "apply", "apply_ray", "load_summary"]
