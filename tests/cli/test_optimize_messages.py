"""What `optimize --int8` prints: its own summary, without ONNX Runtime's advice to run a
quantisation pre-processing that does not apply to the fused graph."""
import logging
import os
import subprocess
import sys

import pytest

pytest.importorskip("onnxruntime")


def test_int8_prints_no_pre_processing_advice(en_pipeline, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "spacy_cls", "optimize", str(en_pipeline), str(tmp_path / "o"),
                             "--int8"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "int8" in result.stdout
    assert "pre-processing" not in result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_the_filter_drops_only_that_advice_and_only_while_quantising(caplog):
    from spacy_cls.models.onnx import PRE_PROCESSING_ADVICE, _without_root_log_messages

    with caplog.at_level(logging.WARNING):
        with _without_root_log_messages(PRE_PROCESSING_ADVICE):
            logging.warning("Please consider pre-processing before quantization. See ...")
            logging.warning("something else")
        logging.warning("Please consider pre-processing before quantization. later")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["something else", "Please consider pre-processing before quantization. later"]
