"""The `python -m spacy_cls` command line: one module per command group, each only
parsing arguments and printing; the work is done by the Python API they call."""
import typer

from .apply import apply_command
from .classify import classify_command
from .convert import convert_command
from .cv import cv_command
from .explain import explain_command
from .init_config import init_config_command
from .optimize import optimize_command
from .plots import plot_confusion_command, plot_training_command, plot_vectors_command
from .rank import rank_uncertain_command
from .serve import serve_command
from .train import train_command
from .tune import tune_command

app = typer.Typer(
    name="spacy_cls",
    help="Text classification tools for spaCy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Text classification tools for spaCy."""


app.command("convert")(convert_command)
app.command("init-config")(init_config_command)
app.command("classify")(classify_command)
app.command("apply")(apply_command)
app.command("explain")(explain_command)
app.command("optimize")(optimize_command)
app.command("plot-training")(plot_training_command)
app.command("plot-confusion")(plot_confusion_command)
app.command("plot-vectors")(plot_vectors_command)
app.command("tune")(tune_command)
app.command("rank-uncertain")(rank_uncertain_command)
app.command("serve")(serve_command)
app.command("cv", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(cv_command)
app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train_command)
