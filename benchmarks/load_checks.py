"""What checking a saved encoder costs when a pipeline loads: the encoder's bytes read
back by spacy_cls's checked shim against spacy-transformers' unchecked
`HFShim.from_bytes`, for the English (all-MiniLM-L6-v2) and Chinese (m3e-small)
checkpoints, plus `check_saved_pipeline` on the saved folder.

    python benchmarks/load_checks.py              # 7 interleaved repeats
    python benchmarks/load_checks.py --repeats 3

No training: the pipelines are initialized and saved as they are.
"""
import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import spacy
from spacy.training import Example
from spacy_transformers.layers.hf_shim import HFShim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LANGUAGES, interleaved, markdown_table, median, model_folder, write_results  # noqa: E402

import spacy_cls  # noqa: E402,F401
from spacy_cls.models.saved_checks import check_saved_pipeline  # noqa: E402


def saved_pipeline(lang: str, folder: Path) -> spacy.language.Language:
    nlp = spacy.blank(lang)
    nlp.add_pipe("cls_classifier", config={"model": {"name": model_folder(lang)}})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("ok"), {"cats": {"A": 1.0, "B": 0.0}})])
    nlp.to_disk(folder)
    return nlp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows, data = [], {"load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for lang in LANGUAGES:
            folder = Path(tmp) / lang
            shim = saved_pipeline(lang, folder).get_pipe("cls_classifier").encoder.shims[0]
            shim_bytes = shim.to_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds = interleaved(
                    {
                        "unchecked": lambda: HFShim.from_bytes(shim, shim_bytes),
                        "checked": lambda: shim.from_bytes(shim_bytes),
                        "check_saved_pipeline": lambda: check_saved_pipeline(folder),
                    },
                    args.repeats,
                )
            medians = {name: median(values) for name, values in seconds.items()}
            data[lang] = {"seconds": seconds, "median_s": medians, "encoder_bytes": len(shim_bytes)}
            rows.append([
                LANGUAGES[lang].model_name, f"{len(shim_bytes) / 1e6:.0f} MB",
                f"{medians['unchecked']:.2f}", f"{medians['checked']:.2f}",
                f"{medians['checked'] / medians['unchecked']:.2f}x", f"{medians['check_saved_pipeline']:.2f}",
            ])
    table = markdown_table(
        ["checkpoint", "saved encoder", "HFShim.from_bytes (s)", "checked from_bytes (s)", "ratio",
         "check_saved_pipeline (s)"],
        rows,
    )
    path = write_results(
        "load_checks", "Loading a saved encoder: cost of the checks", table, data,
        notes=(
            f"Medians of {args.repeats} interleaved repeats in one process. Load average "
            f"(1 min) at the start {data['load_average_start'][0]:.1f}, at the end "
            f"{os.getloadavg()[0]:.1f}: on a busy machine the figures are noisy, compare the ratio."
        ),
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
