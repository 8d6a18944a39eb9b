"""How fast labelled files are read and converted: `read_rows` over each public data
set, and `convert` with and without writing the `.spacy` file (SST-2 train).

    python benchmarks/convert_speed.py [--repeats 3]

Reads the data sets from SPACY_CLS_DATA (default: shared/data beside the project).
Prints a table and saves benchmarks/results/convert_speed.{md,json}, with the load
average at the start and end: on a shared machine the figures move with it.
"""
import argparse
import os
import tempfile
from pathlib import Path

from _common import SHARED_DATA, interleaved, markdown_table, median, write_results

from spacy_cls.data.convert import convert
from spacy_cls.data.readers import ReaderSpec, read_rows

DATA = Path(os.environ.get("SPACY_CLS_DATA") or SHARED_DATA)
FILES = {
    "SST-2 train": ("sst2/train.tsv", dict(text_col="sentence", label_col="label")),
    "TREC train": ("trec/train_5500.label", dict(format="prefixed", encoding="latin-1")),
    "GoEmotions train": ("goemotions/train.tsv", dict(header=False, label_sep=",",
                                                      label_names="goemotions/labels.txt")),
    "ChnSentiCorp train": ("chnsenticorp/train.tsv", dict(text_col="text_a", label_col="label")),
    "TNEWS train": ("tnews/train.tsv", dict(header=False)),
}


def spec_for(options: dict) -> ReaderSpec:
    if "label_names" in options:
        options = dict(options, label_names=DATA / options["label_names"])
    return ReaderSpec(**options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows, data = [], {"repeats": args.repeats, "files": {}}
    for name, (rel, options) in FILES.items():
        path, spec = DATA / rel, spec_for(options)
        n = sum(1 for _ in read_rows(path, spec))
        seconds = median(interleaved({"read": lambda: sum(1 for _ in read_rows(path, spec))}, args.repeats)["read"])
        rows.append([name, f"{n:,}", f"{seconds:.2f}", f"{n / seconds:,.0f}"])
        data["files"][name] = {"records": n, "read_rows_s": seconds}
    path, spec = DATA / FILES["SST-2 train"][0], spec_for(FILES["SST-2 train"][1])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "train.spacy"
        runs = {
            "convert --dry-run": lambda: convert(path, out, spec, dry_run=True, progress=False),
            "convert": lambda: convert(path, out, spec, progress=False, write_report=False),
        }
        for label, values in interleaved(runs, args.repeats).items():
            seconds = median(values)
            rows.append([f"SST-2 train, {label}", "67,349", f"{seconds:.2f}", f"{67349 / seconds:,.0f}"])
            data[label] = seconds
    load_after = os.getloadavg()
    data["load_average"] = {"start": load_before, "end": load_after}
    table = markdown_table(["file / step", "records", "seconds (median)", "records/s"], rows)
    notes = (f"Load average (1, 5, 15 min) at the start {load_before[0]:.1f}, {load_before[1]:.1f}, "
             f"{load_before[2]:.1f}; at the end {load_after[0]:.1f}, {load_after[1]:.1f}, {load_after[2]:.1f}. "
             f"`read_rows` includes the file checks, the header guess and every row's parsing.")
    print(table)
    print(notes)
    print(write_results("convert_speed", "Reading and converting labelled files", table, data, notes))


if __name__ == "__main__":
    main()
