"""`spacy_cls.TeacherCorpus.v1`: training examples whose cats are a teacher pipeline's
soft scores, so that `spacy train student.cfg` distils with no other command.

Every text read becomes one example or is rejected with its id and reason: a text
that cannot be read, a text seen before (gold texts first, then the unlabelled ones
in file order), one longer than the student's `nlp.max_length`, one whose apply
scores are missing or not probabilities, a gold example with a label the teacher
lacks. The rejected rows are counted in one warning and, with `report`, written to a
JSON file.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

from .apply_scores import read_apply_scores, score_problem
from .cache import folder_fingerprint, open_cache
from .targets import check_alpha, check_temperature, mix, soften
from .texts import read_texts

logger = logging.getLogger("spacy_cls")

# Texts the teacher scores between two writes to the cache.
SCORE_CHUNK = 1024
# Rejected texts named in the warning (`report` lists them all).
SHOWN_REJECTED = 5


@dataclass
class TeacherReport:
    """What the corpus read and made: read = examples + rejected, for gold and texts."""

    gold_read: int = 0
    texts_read: int = 0
    examples: int = 0
    scored_by_teacher: int = 0
    from_cache: int = 0
    from_apply_output: int = 0
    rejected: List[Dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> Dict:
        return dict(self.__dict__)


class Teacher:
    """A teacher pipeline's component, loaded once with the folder checks, with its
    scores cached on disk by a fingerprint of the folder and by text."""

    def __init__(self, path: Union[str, Path], component: Optional[str], cache_dir: Optional[Path],
                 batch_size: int) -> None:
        from ..models.safe_load import load_checked
        from ..scale.predict import find_component

        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"The teacher {self.path} is not a pipeline folder: give the folder `spacy train` wrote "
                f"(e.g. training/teacher/model-best)."
            )
        self.nlp = load_checked(self.path)
        self.component = find_component(self.nlp, component)
        pipe = self.nlp.get_pipe(self.component)
        self.labels: List[str] = list(pipe.labels)
        self.multi_label = bool(pipe.model.attrs.get("multi_label"))
        self.batch_size = batch_size
        self.cache = open_cache(cache_dir, folder_fingerprint(self.path, self.component), self.labels, self.multi_label)

    def scores(self, texts: Sequence[str], report: TeacherReport) -> Dict[str, numpy.ndarray]:
        """{text: the component's scores}, from the cache or computed (and cached)."""
        unique = list(dict.fromkeys(texts))
        found = self.cache.get_many(unique)
        report.from_cache += len(found)
        todo = [t for t in unique if t not in found]
        for start in range(0, len(todo), SCORE_CHUNK):
            chunk = todo[start:start + SCORE_CHUNK]
            computed = [
                (text, numpy.asarray([doc.cats[label] for label in self.labels], dtype="float32"))
                for text, doc in zip(chunk, self.nlp.pipe(chunk, batch_size=self.batch_size))
            ]
            self.cache.put_many(computed)
            found.update(computed)
            report.scored_by_teacher += len(computed)
        return found


class TeacherCorpus:
    """Examples with the teacher's soft cats at `temperature`: on the gold corpus's
    texts mixed with their gold cats (alpha * soft + (1 - alpha) * gold), and on the
    unlabelled `texts` alone. Built once, on the first call, and kept for later epochs."""

    def __init__(self, *, teacher: Optional[Path], texts: Optional[Union[str, Path]], text_col: str,
                 id_col: Optional[str], gold: Optional[Callable[[Language], Iterable[Example]]],
                 scores: Optional[Path], component: Optional[str], temperature: float, alpha: float,
                 cache_dir: Optional[Path], batch_size: int, limit: int, report: Optional[Path]) -> None:
        check_temperature(temperature)
        check_alpha(alpha)
        self.teacher_path = teacher
        self.texts = texts
        self.text_col = text_col
        self.id_col = id_col
        self.gold = gold
        self.scores_path = scores
        self.component = component
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.limit = limit
        self.report_path = report
        self.report: Optional[TeacherReport] = None
        self._examples: Optional[List[Tuple[str, Dict[str, float]]]] = None

    def check_sources(self) -> None:
        """What the corpus reads, checked when it is first read (a config may leave the
        paths null until `spacy train` is given them)."""
        if self.teacher_path is None and self.scores_path is None:
            raise ValueError(
                "spacy_cls.TeacherCorpus.v1 needs a teacher: the pipeline folder (teacher = ...), or the output "
                "of `python -m spacy_cls apply` on the texts (scores = ...); with the shipped configs, "
                "--paths.teacher training/teacher/model-best."
            )
        if self.texts is None and self.gold is None:
            raise ValueError("spacy_cls.TeacherCorpus.v1 reads nothing: give texts = ... (unlabelled), a gold corpus, or both.")
        if self.gold is not None and self.teacher_path is None and self.alpha > 0:
            raise ValueError(
                "The gold texts need the teacher's scores, and apply output (scores = ...) covers the unlabelled "
                "texts only: give teacher = the pipeline folder as well, or alpha = 0 (gold cats alone on gold texts)."
            )
        if self.scores_path is not None and self.texts is None:
            raise ValueError("scores = ... (apply output) gives the scores of texts = ...: name the texts that apply read.")

    def __call__(self, nlp: Language) -> Iterator[Example]:
        if self._examples is None:
            self._examples = self.targets(nlp)
        for text, cats in self._examples:
            yield Example.from_dict(nlp.make_doc(text), {"cats": cats})

    def targets(self, nlp: Language) -> List[Tuple[str, Dict[str, float]]]:
        """(text, soft cats) of every example, in order: gold texts, then unlabelled ones."""
        self.check_sources()
        report = TeacherReport()
        seen: Dict[str, str] = {}

        def accept(ident: str, text: str) -> bool:
            if len(text) > nlp.max_length:
                reject(ident, f"text of {len(text):,} characters is longer than the student's nlp.max_length "
                              f"({nlp.max_length:,})")
                return False
            if text in seen:
                reject(ident, f"the same text as {seen[text]}")
                return False
            seen[text] = ident
            return True

        def reject(ident: str, reason: str) -> None:
            report.rejected.append({"id": ident, "reason": reason})

        teacher = Teacher(self.teacher_path, self.component, self.cache_dir, self.batch_size) \
            if self.teacher_path is not None else None
        gold_rows: List[Tuple[str, Dict[str, float]]] = []
        for i, eg in enumerate(self.gold(nlp) if self.gold is not None else ()):
            report.gold_read += 1
            ident = f"gold example {i}"
            cats = dict(eg.reference.cats)
            unknown = [label for label in cats if teacher is not None and label not in teacher.labels]
            if unknown:
                reject(ident, f"gold label {unknown[0]!r} is not among the teacher's labels ({', '.join(teacher.labels)})")
            elif accept(ident, eg.reference.text):
                gold_rows.append((eg.reference.text, cats))
        text_rows: List[Tuple[str, str]] = []
        ids_seen: Dict[str, str] = {}
        if self.texts is not None:
            for ident, text, problem in read_texts(self.texts, self.text_col, self.id_col):
                if self.limit and report.texts_read >= self.limit:
                    break
                report.texts_read += 1
                if ident in ids_seen:
                    # apply output is joined by id: two rows with one id would get the same scores
                    reject(ident, f"the id {ident!r} is given to an earlier row too ({ids_seen[ident]}); ids must be unique")
                    continue
                ids_seen[ident] = f"row {report.texts_read}"
                if problem:
                    reject(ident, problem)
                elif accept(ident, text):
                    text_rows.append((ident, text))
        labels, multi_label, given = self._apply_scores(teacher)
        probs: Dict[str, numpy.ndarray] = {}
        if given is not None:
            kept = []
            for ident, text in text_rows:
                row = given.get(ident)
                problem = f"no teacher score for this id in {self.scores_path}" if row is None \
                    else score_problem(row, multi_label)
                if problem:
                    reject(ident, problem)
                else:
                    probs[text] = row
                    kept.append((ident, text))
            report.from_apply_output = len(kept)
            text_rows = kept
        if teacher is not None:
            wanted = [text for text, _ in gold_rows] if self.alpha > 0 else []
            wanted += [text for _, text in text_rows if text not in probs]
            probs.update(teacher.scores(wanted, report))
        examples = [
            (text, mix(self._soft(probs[text], multi_label), gold, labels, self.alpha, multi_label=multi_label)
             if self.alpha > 0 else dict(gold))
            for text, gold in gold_rows
        ]
        examples += [(text, mix(self._soft(probs[text], multi_label), None, labels, self.alpha, multi_label=multi_label))
                     for _, text in text_rows]
        report.examples = len(examples)
        if teacher is not None:
            teacher.cache.close()
        self.report = report
        self._log(report)
        return examples

    def _apply_scores(self, teacher: Optional[Teacher]):
        if self.scores_path is None:
            return teacher.labels, teacher.multi_label, None
        labels, multi_label, given = read_apply_scores(Path(self.scores_path))
        if teacher is not None and (labels != teacher.labels or multi_label != teacher.multi_label):
            raise ValueError(
                f"The apply output {self.scores_path} has the labels {labels} "
                f"({'multi-label' if multi_label else 'exclusive'}), the teacher {self.teacher_path} "
                f"{teacher.labels} ({'multi-label' if teacher.multi_label else 'exclusive'}): give the apply "
                f"output of this teacher."
            )
        return labels, multi_label, given

    def _soft(self, row: numpy.ndarray, multi_label: bool) -> numpy.ndarray:
        return soften(row[None, :], self.temperature, multi_label=multi_label)[0]

    def _log(self, report: TeacherReport) -> None:
        read = report.gold_read + report.texts_read
        if self.report_path is not None:
            path = Path(self.report_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False), encoding="utf8")
        logger.info(
            "TeacherCorpus: %d texts read (%d gold, %d unlabelled), %d examples; teacher scores: %d computed, "
            "%d from the cache, %d from apply output", read, report.gold_read, report.texts_read,
            report.examples, report.scored_by_teacher, report.from_cache, report.from_apply_output,
        )
        if report.rejected:
            shown = "; ".join(f"{r['id']}: {r['reason']}" for r in report.rejected[:SHOWN_REJECTED])
            more = len(report.rejected) - SHOWN_REJECTED
            logger.warning(
                "TeacherCorpus: skipped %d rejected texts of %d: %s%s", len(report.rejected), read, shown,
                f" (and {more} more{'; all in ' + str(self.report_path) if self.report_path else ''})" if more > 0 else "",
            )


@registry.readers("spacy_cls.TeacherCorpus.v1")
def create_teacher_corpus(
    teacher: Optional[Path] = None,
    texts: Optional[str] = None,
    text_col: str = "text",
    id_col: Optional[str] = "id",
    gold: Optional[Callable[[Language], Iterable[Example]]] = None,
    scores: Optional[Path] = None,
    component: Optional[str] = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    cache_dir: Optional[Path] = None,
    batch_size: int = 64,
    limit: int = 0,
    report: Optional[Path] = None,
) -> Callable[[Language], Iterator[Example]]:
    """Distillation examples for `spacy train` (docs/distill.md).

    teacher: a trained pipeline folder; component: its classifier (null: the only one).
    texts: unlabelled texts (a .jsonl/.csv/.tsv/.parquet file, folder or glob with a
    `text_col` column and ids from `id_col` where there is one, as `apply` reads them,
    or a .txt file of one text a line).
    gold: a corpus reader block (e.g. spacy_cls.LabelledTextCorpus.v1) whose texts get
    alpha * teacher + (1 - alpha) * gold cats. scores: `apply` output of the teacher on
    `texts`, read by row id instead of running the teacher on them. temperature: the
    teacher's scores softened as softmax(logits / T) (sigmoid per label for
    multi-label). cache_dir: where the teacher's scores are kept (null:
    $SPACY_CLS_TEACHER_CACHE or ~/.cache/spacy_cls/teacher_scores). limit: the most
    unlabelled texts read (0: all). report: a JSON file with the counts and every
    rejected text."""
    return TeacherCorpus(
        teacher=teacher, texts=texts, text_col=text_col, id_col=id_col, gold=gold, scores=scores,
        component=component, temperature=temperature, alpha=alpha, cache_dir=cache_dir,
        batch_size=batch_size, limit=limit, report=report,
    )
