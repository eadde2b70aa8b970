"""`raygrow grow` round trip on a saved tiny Hugging Face export."""

from __future__ import annotations

import argparse
import json

import pytest
from transformers import AutoModelForCausalLM

from raygrow.grow import max_logit_difference
from raygrow.grow.cli import add_arguments, run
from raygrow.model import build_model


@pytest.fixture
def export(tmp_path, kit):
    source = tmp_path / "small"
    build_model(kit.shape(), kit.vocab, seed=5).save_pretrained(source, safe_serialization=True)
    (source / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    return source


def grow_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="raygrow grow")
    add_arguments(parser)
    return run(parser.parse_args([str(a) for a in argv]))


def test_preserving_growth_round_trip(export, tmp_path, kit, capsys):
    out = tmp_path / "grown"
    code = grow_cli(export, "--to", "layers=4,hidden=32", "--depth-op", "zero",
                    "--width-op", "split",
                    "--out", out)
    assert code == 0
    printed = capsys.readouterr().out
    assert "function-preserving: yes" in printed
    grown = AutoModelForCausalLM.from_pretrained(out)
    assert (grown.config.num_hidden_layers, grown.config.hidden_size,
            grown.config.num_key_value_heads) == (4, 32, 4)
    # ffn kept its ratio to hidden, heads kept head_dim 4
    assert grown.config.intermediate_size == 48
    source = AutoModelForCausalLM.from_pretrained(export)
    assert max_logit_difference(source, grown, kit.vocab) <= 1e-4
    assert (out / "tokenizer.json").read_text() == (export / "tokenizer.json").read_text()
    assert json.loads((out / "growth.json").read_text())["function_preserving"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grown", "small"]  # no temporary left


def test_stack_with_layer_order(export, tmp_path, capsys):
    out = tmp_path / "stacked"
    assert grow_cli(export, "--to", "layers=3", "--depth-op", "stack", "--layer-order", "0,1,1",
                    "--out", out) == 0
    assert "function-preserving: no" in capsys.readouterr().out
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 3


@pytest.mark.parametrize("argv, message", [
    (["--to", "layers=4", "--depth-op", "masked"],
     "--depth-op: masked growth needs a training ramp"),
    (["--to", "layers=4"], "depth_op:"),
    (["--to", "layers=4,depth=2", "--depth-op", "stack"], "--to: unknown key 'depth'"),
    (["--to", "hidden=24,heads=6", "--width-op", "hyperclone"],
     "hidden: hyperclone needs an integer multiple"),
    (["--to", "layers=4", "--depth-op", "stack", "--layer-order", "0,x"], "--layer-order:"),
])
def test_refusals_are_one_line(export, tmp_path, capsys, argv, message):
    assert grow_cli(export, *argv, "--out", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_refuses_a_source_without_weights(tmp_path, export, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((export / "config.json").read_text())
    assert grow_cli(broken, "--to", "layers=4", "--depth-op", "stack", "--out",
                    tmp_path / "out") == 2
    assert "SRC_DIR: cannot load the model" in capsys.readouterr().err


def test_refuses_a_non_empty_destination(export, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert grow_cli(export, "--to", "layers=4", "--depth-op", "stack", "--out", out) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_fills_an_existing_empty_destination(export, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert grow_cli(export, "--to", "layers=4", "--depth-op", "interleave", "--out", out) == 0
    assert (out / "model.safetensors").is_file()
