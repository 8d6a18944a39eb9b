"""`python -m spacy_cls COMMAND ...`: the commands live in `spacy_cls.cli`."""
from .cli import app

if __name__ == "__main__":
    app()
