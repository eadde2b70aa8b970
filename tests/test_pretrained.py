"""A plan that starts from a pretrained Hugging Face model (`stages[0].init`), without a cluster:
its shape and config fields read and kept, refusals, layer ranges, block expansion, frozen
parameters and their FLOPs. The models are written by stock transformers (raygrow.tiny_hf)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_cli import assert_refused, raygrow
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from raygrow.cli import main
from raygrow.config import GrowthConfig, Shape, run_config
from raygrow.config.growth import check_growth
from raygrow.coordinator.spec import plan_specs
from raygrow.data.tokenizer import ByteTokenizer
from raygrow.errors import ConfigError
from raygrow.grow import PRESERVATION_TOLERANCE, max_logit_difference
from raygrow.grow.depth import layer_sources
from raygrow.model import (
    block_params,
    build_model,
    flops_per_token,
    layer_key,
    param_shapes,
    shape_of,
)
from raygrow.tiny_hf import FAMILIES, write_tiny_model
from raygrow.train.engine import (
    base_optimizer,
    engine_from_state,
    freeze,
    gather_full_state,
    single_process_group,
)
from raygrow.train.loop import causal_lm_loss

SEQ = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """One tiny model directory per family, written by stock transformers."""
    root = tmp_path_factory.mktemp("pretrained")
    return {family: str(write_tiny_model(root / family, family)) for family in FAMILIES}


def plan(init: str, **sections) -> dict:
    """A SOLAR-style plan from `init`: stage 0 trains nothing, stage 1 stacks 0..2 and 1..3."""
    raw = {
        "name": "pre",
        "data": {"source": "stdlib", "seq_len": SEQ, "max_documents": 5},
        "train": {"batch_tokens": 512, "micro_batch": 4},
        "stages": [
            {"init": init, "tokens": 0},
            {
                "growth": {"depth_op": "stack", "layer_order": ["0..2", "1..3"]},
                "shape": {"layers": 6},
                "tokens": 1024,
            },
        ],
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


@pytest.mark.parametrize("family", FAMILIES)
def test_init_takes_shape_config_and_tokenizer_from_the_model(models, family):
    config = run_config(plan(models[family]))
    source = AutoModelForCausalLM.from_pretrained(models[family])
    first, second = config.stages[0].shape, config.stages[1].shape
    assert first == shape_of(source.config)  # what transformers itself reads from the directory
    assert second == dataclasses.replace(first, layers=6)  # unspecified fields are the model's
    assert config.stages[1].growth.layer_order == [0, 1, 2, 1, 2, 3]
    assert config.data.tokenizer == models[family]
    grown = build_model(second, second.vocab)
    assert type(grown) is type(source)
    for field in (
        "rope_parameters",
        "rms_norm_eps",
        "head_dim",
        "tie_word_embeddings",
        "num_key_value_heads",
        "sliding_window",
        "bos_token_id",
        "eos_token_id",
    ):
        assert getattr(grown.config, field, None) == getattr(source.config, field, None), field
    assert param_shapes(first, first.vocab) == {
        n: tuple(p.shape) for n, p in source.named_parameters()
    }


def test_a_plan_tokenizer_wins_and_a_given_shape_must_agree(models):
    config = run_config(plan(models["llama"], data={"tokenizer": "byte"}))
    assert config.data.tokenizer == "byte"
    agreeing = plan(models["llama"])
    agreeing["stages"][0]["shape"] = {"layers": 4, "kv_heads": 2}
    assert run_config(agreeing).stages[0].shape.layers == 4
    with pytest.raises(ConfigError, match=r"^stages\[1\]\.init: only the first stage"):
        bad = plan(models["llama"])
        bad["stages"][1]["init"] = models["llama"]
        run_config(bad)


def gpt2_dir(tmp_path) -> str:
    """A real model of a family raygrow does not grow."""
    directory = tmp_path / "gpt2"
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=ByteTokenizer.vocab_size)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return str(directory)


def small_vocab_dir(tmp_path) -> str:
    """A Llama whose 200-token vocabulary cannot hold the byte tokenizer's 258 ids."""
    directory = tmp_path / "small-vocab"
    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        vocab_size=200,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    ByteTokenizer().save_pretrained(str(directory))
    return str(directory)


def not_a_model_dir(tmp_path) -> str:
    directory = tmp_path / "tokenizer-only"
    ByteTokenizer().save_pretrained(str(directory))
    return str(directory)


REFUSALS = {
    "missing": (
        lambda tmp, models: plan(str(tmp / "nowhere")),
        ["stages[0].init", "does not exist"],
    ),
    "not a model": (
        lambda tmp, models: plan(not_a_model_dir(tmp)),
        ["stages[0].init", "no config.json"],
    ),
    "model_type": (
        lambda tmp, models: plan(gpt2_dir(tmp)),
        ["stages[0].init", "model_type 'gpt2'"],
    ),
    "shape": (
        lambda tmp, models: {
            **plan(models["qwen2"]),
            "stages": [
                {"init": models["qwen2"], "tokens": 0, "shape": {"hidden": 128}},
                *plan(models["qwen2"])["stages"][1:],
            ],
        },
        ["stages[0].shape.hidden", "the model", "has 64"],
    ),
    "vocab": (
        lambda tmp, models: plan(small_vocab_dir(tmp)),
        ["data.tokenizer", "258 tokens", "200"],
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_init_is_refused_in_one_line_before_any_work(tmp_path, models, case):
    build, fragments = REFUSALS[case]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(build(tmp_path, models)))
    storage = tmp_path / "storage"
    assert_refused(raygrow("train", str(path), "--storage", str(storage), cwd=tmp_path), *fragments)
    assert not storage.exists()


def test_layer_order_ranges_and_block_expansion_placement():
    assert GrowthConfig(depth_op="stack", layer_order=["0..2", 1, "3..3"]).layer_order == [
        0,
        1,
        2,
        1,
        3,
    ]
    for bad in (["2..1"], ["0..x"], ["a"]):
        with pytest.raises(ConfigError, match="^layer_order"):
            GrowthConfig(depth_op="stack", layer_order=bad)
    assert layer_sources("zero", 4, 6, None, every=2) == [0, 1, None, 2, 3, None]
    assert layer_sources("zero", 8, 10, None, every=4) == [0, 1, 2, 3, None, 4, 5, 6, 7, None]
    source = Shape(layers=4, hidden=16, heads=4)
    with pytest.raises(ConfigError, match="^layers: one new block after every 2"):
        check_growth(source, dataclasses.replace(source, layers=8), None, "zero", None, every=2)


@pytest.mark.parametrize("family", FAMILIES)
def test_offline_growth_of_each_family_keeps_its_class_and_function(tmp_path, models, family):
    """`raygrow grow` on a stock model: a range-stacked copy and a function-preserving widening
    both load as the model's own class; the widening keeps the logits."""
    source = AutoModelForCausalLM.from_pretrained(models[family], dtype=torch.float32)
    stacked, widened = tmp_path / "stacked", tmp_path / "widened"
    assert (
        main(
            [
                "grow",
                models[family],
                "--to",
                "layers=6",
                "--depth-op",
                "stack",
                "--layer-order",
                "0..2,1..3",
                "--out",
                str(stacked),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "grow",
                models[family],
                "--to",
                "layers=6,hidden=128,ffn=256",
                "--depth-op",
                "zero",
                "--every",
                "2",
                "--width-op",
                "zero",
                "--out",
                str(widened),
            ]
        )
        == 0
    )
    stacked_model = AutoModelForCausalLM.from_pretrained(stacked)
    widened_model = AutoModelForCausalLM.from_pretrained(widened, dtype=torch.float32)
    assert type(stacked_model) is type(widened_model) is type(source)
    tensors, original = (
        load_file(stacked / "model.safetensors"),
        load_file(f"{models[family]}/model.safetensors"),
    )
    for target, layer in enumerate([0, 1, 2, 1, 2, 3]):
        for name in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            assert torch.equal(tensors[layer_key(target, name)], original[layer_key(layer, name)])
    assert widened_model.config.rope_parameters == source.config.rope_parameters
    difference = max_logit_difference(source, widened_model, source.config.vocab_size)
    assert difference <= PRESERVATION_TOLERANCE, difference


def test_trainable_new_blocks_and_patterns_resolve_per_stage(models):
    pro = plan(models["llama"], train={"trainable": "new_blocks"})
    pro["stages"][1] = {
        "growth": {"depth_op": "zero", "every": 2},
        "shape": {"layers": 6},
        "tokens": 1024,
    }
    specs = plan_specs(run_config(pro), "dataset")
    assert specs[0].trainable is None  # trains nothing
    assert {name.split(".")[2] for name in specs[1].trainable} == {"2", "5"}
    assert len(specs[1].trainable) == 2 * 9  # every tensor of the two new blocks
    assert specs[1].fingerprint()["trainable"] == list(specs[1].trainable)
    patterned = plan(
        models["llama"], train={"trainable": ["model.layers.*.mlp.*", "lm_head.weight"]}
    )
    chosen = plan_specs(run_config(patterned), "dataset")[1].trainable
    assert len(chosen) == 6 * 3 + 1 and all(".mlp." in n or n == "lm_head.weight" for n in chosen)
    with pytest.raises(
        ConfigError, match=r"^train\.trainable: new_blocks: stage 1 has no new blocks"
    ):
        plan_specs(run_config(plan(models["llama"], train={"trainable": "new_blocks"})), "dataset")
    with pytest.raises(
        ConfigError, match=r"^train\.trainable: 'model\.nothing\*' matches no parameter"
    ):
        plan_specs(
            run_config(plan(models["llama"], train={"trainable": ["model.nothing*"]})), "dataset"
        )
    with pytest.raises(ConfigError, match=r"^train\.trainable: freezing parameters is supported"):
        run_config(plan(models["llama"], train={"trainable": "new_blocks", "zero_stage": 3}))


def test_frozen_blocks_flops_count_only_the_backward_they_need():
    """The convention in raygrow.model: a frozen block above a trained one still passes
    activation gradients (2·N_block + 8·d·T); below the lowest trained one, no backward at all."""
    shape = Shape(layers=4, hidden=32, heads=4, ffn=64)
    vocab, per_block, attention = 100, block_params(shape), 4 * shape.hidden * SEQ
    names = list(param_shapes(shape, vocab))
    everything = flops_per_token(shape, vocab, SEQ)
    assert flops_per_token(shape, vocab, SEQ, names) == everything
    block = lambda layer: [n for n in names if n.startswith(f"model.layers.{layer}.")]
    top_only = flops_per_token(shape, vocab, SEQ, block(3))
    forward = 2 * (4 * per_block + shape.hidden) + 4 * attention
    assert top_only == forward + (2 * shape.hidden + 2 * per_block + 2 * attention) + 2 * per_block
    above_first = flops_per_token(shape, vocab, SEQ, block(1) + block(2) + block(3))
    assert everything - above_first == 2 * per_block + 2 * shape.hidden + (
        2 * per_block + 2 * attention
    )


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_frozen_parameters_stay_bit_identical_and_get_no_optimizer_state(zero_stage):
    single_process_group()
    shape = Shape(layers=3, hidden=32, heads=4, kv_heads=2, ffn=64, family="qwen2")
    config = run_config(
        {
            "model": dataclasses.asdict(shape),
            "data": {"seq_len": SEQ},
            "train": {
                "batch_tokens": 8 * SEQ,
                "micro_batch": 4,
                "zero_stage": zero_stage,
                "lr": 1e-2,
                "warmup_steps": 0,
            },
        }
    )
    model = build_model(shape, 64, seed=0)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainable = [name for name in before if name.startswith("model.layers.1.")]
    freeze(model, trainable)
    engine = engine_from_state(model, config, 1)
    batches = torch.randint(0, 64, (3, 8, SEQ + 1), generator=torch.Generator().manual_seed(1))
    for batch in batches:
        for micro in batch.split(4):
            engine.backward(causal_lm_loss(engine, micro))
            engine.step()
    state = gather_full_state(engine)
    for name, value in state.params.items():
        assert torch.equal(value, before[name]) == (name not in trainable), name
    assert sorted(state.exp_avg) == sorted(state.exp_avg_sq) == sorted(trainable)
    # AdamW holds moments of the trained numbers only (ZeRO 1-2 keep them as flat partitions)
    held = sum(entry["exp_avg"].numel() for entry in base_optimizer(engine).state.values())
    assert held == sum(before[name].numel() for name in trainable)
    # a resume rebuilds the same state: frozen weights from the module, moments for the rest
    again = build_model(shape, 64, seed=5)
    freeze(again, trainable)
    resumed = gather_full_state(engine_from_state(again, config, 1, state))
    for table in ("params", "exp_avg"):
        for name, value in getattr(state, table).items():
            assert torch.equal(getattr(resumed, table)[name], value), (table, name)
