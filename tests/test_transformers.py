"""Hugging Face transformers through the engine and the search (issue 24): token-id inputs, attention
heads (BERT's separate q/k/v, GPT-2's fused Conv1D, Llama's grouped-query heads) and MLP widths as
groups, pruned models that run, export and match ONNX Runtime, reload, and search end to end."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from autoprune.core.errors import AutopruneError
from autoprune.core.inputs import InputSpec, parse
from autoprune.latency.onnx import export_onnx, onnx_outputs
from autoprune.latency.runtimes import open_session
from autoprune.load.data import load_data
from autoprune.load.models import load_checkpoint, load_model, save_checkpoint
from autoprune.prune.criteria import list_criteria
from autoprune.prune.engine import global_ratios, prune, unprunable_groups
from autoprune.prune.groups import find_groups
from autoprune.prune.plan import Plan
from tests.transformer_models import SEQ, VOCAB

pytest.importorskip("transformers")

SPEC = InputSpec((SEQ,), dtype="int64", high=VOCAB)
# name -> (heads groups' units, query heads per unit, MLP width): what each tiny config declares
MODELS = {"bert": (4, 1, 128), "gpt2": (4, 1, 256), "llama": (2, 2, 128)}


def model(name: str):
    return load_model(f"tests.transformer_models:{name}")


def heads_groups(groups):
    return [g for g in groups if g.unit == "heads"]


@pytest.mark.parametrize("name", list(MODELS))
def test_groups_are_heads_and_mlp_widths(name):
    units, _, width = MODELS[name]
    groups = find_groups(model(name), input_shape=SPEC)
    heads = heads_groups(groups)
    mlp = [g for g in groups if g.channels == width]
    assert len(heads) == 2 and all(g.channels == units for g in heads), groups
    assert len(mlp) == 2, groups  # one per layer: intermediate / c_fc / gate+up
    if name == "llama":
        assert all(len(g.members) == 3 for g in mlp)  # gate_proj, up_proj, down_proj


@pytest.mark.parametrize("name", list(MODELS))
def test_pruned_transformer_runs_exports_and_matches_onnx(name, tmp_path):
    net = model(name)
    groups = find_groups(net, input_shape=SPEC)
    assert unprunable_groups(net, groups, input_shape=SPEC, ratios=(0.3, 0.5, 0.7)) == {}
    pruned = prune(net, Plan(ratios={g.name: 0.5 for g in groups}), input_shape=SPEC)
    before = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < 0.75 * before
    x = SPEC.example(2, seed=3)
    with torch.no_grad():
        y = pruned(x)
        assert y.shape == net(x).shape
    path = export_onnx(pruned, tmp_path / "m.onnx", input_shape=SPEC, batch_size=2)
    np.testing.assert_allclose(onnx_outputs(path, x), y.numpy(), atol=1e-4)
    session = open_session(str(path), {"provider": "CPUExecutionProvider", "intra_op_threads": 1,
                                       "inter_op_threads": 1, "graph_optimization": "all"}, batch_size=2)
    feed = session.feed(seed=1)
    assert feed.dtype == np.int64 and feed.max() < VOCAB and len(np.unique(feed)) > 1  # ids, not zeros
    assert np.asarray(session.run(feed)).shape == tuple(y.shape)


def test_gqa_heads_leave_with_their_query_group():
    """Llama, 4 query heads over 2 key/value heads: removing one KV head removes its 2 query heads,
    and what stays is the unpruned model's own slices."""
    net = model("llama")
    attn = net.model.model.layers[0].self_attn
    group = heads_groups(find_groups(net, input_shape=SPEC))[0]
    pruned = prune(net, Plan(ratios={group.name: 0.5}), input_shape=SPEC)
    after = pruned.model.model.layers[0].self_attn
    d = attn.head_dim
    assert after.q_proj.out_features == 2 * d and after.k_proj.out_features == d == after.v_proj.out_features
    assert after.o_proj.in_features == 2 * d
    kv = [h for h in range(2) if torch.equal(attn.k_proj.weight[h * d:(h + 1) * d], after.k_proj.weight)]
    assert len(kv) == 1
    q_rows = attn.q_proj.weight[kv[0] * 2 * d:(kv[0] + 1) * 2 * d]
    assert torch.equal(q_rows, after.q_proj.weight)
    assert torch.equal(attn.o_proj.weight[:, kv[0] * 2 * d:(kv[0] + 1) * 2 * d], after.o_proj.weight)


def test_head_counts_follow_the_pruning():
    bert, gpt2 = model("bert"), model("gpt2")
    for net in (bert, gpt2):
        plan = Plan(ratios={g.name: 0.5 for g in heads_groups(find_groups(net, input_shape=SPEC))})
        pruned = prune(net, plan, input_shape=SPEC)
        if net is bert:
            sa = pruned.model.bert.encoder.layer[0].attention.self
            assert (sa.num_attention_heads, sa.all_head_size) == (2, sa.query.out_features)
        else:
            at = pruned.model.transformer.h[0].attn
            assert (at.num_heads, at.split_size) == (2, at.c_attn.nf // 3)


def test_pruned_transformer_reloads_from_its_checkpoint(tmp_path):
    net = model("bert")
    plan = Plan(ratios={g.name: 0.5 for g in find_groups(net, input_shape=SPEC)})
    pruned = prune(net, plan, input_shape=SPEC)
    path = save_checkpoint(pruned, tmp_path / "model.pt", arch="tests.transformer_models:bert",
                           plan=plan.model_dump(), input_shape=SPEC)
    again = load_checkpoint(path)
    x = SPEC.example(2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(again(x), pruned(x))


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "gpt_neox"])
def test_a_model_pruned_per_layer_saves_and_reloads_with_from_pretrained(name, tmp_path):
    """Layers pruned to different widths (which one config value cannot say) come back through the
    Auto class the model belongs to, as anyone loads a Hub model with code of its own."""
    import transformers

    from autoprune.load.hf import from_pretrained, save_pretrained

    net = model(name)
    groups = find_groups(net, input_shape=SPEC)
    pruned = prune(net, Plan(ratios={g.name: 0.5 if i % 4 in (1, 2) else 0.25 for i, g in enumerate(groups)}),
                   input_shape=SPEC)
    shapes = [tuple(p.shape) for n, p in pruned.model.named_parameters() if n.endswith("weight") and p.dim() == 2]
    assert len(set(shapes)) > len({tuple(p.shape) for n, p in net.model.named_parameters()
                                   if n.endswith("weight") and p.dim() == 2})  # layers differ in width
    path = save_pretrained(pruned, tmp_path / "hf")
    auto = next(iter(__import__("json").loads((path / "config.json").read_text())["auto_map"]))
    again = getattr(transformers, auto).from_pretrained(str(path), trust_remote_code=True).eval()
    assert [tuple(p.shape) for n, p in again.named_parameters() if n.endswith("weight") and p.dim() == 2] == shapes
    x = SPEC.example(2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(path)(x), pruned(x))
    assert pruned.model.config.to_dict().get("autoprune_layout") is None  # the model in memory is untouched


@pytest.mark.parametrize("criterion", list_criteria())
def test_every_criterion_scores_transformer_blocks_or_says_which_can(criterion):
    net = model("bert")
    groups = [g.name for g in find_groups(net, input_shape=SPEC)]
    x, y = SPEC.example(8, seed=2), torch.randint(0, 3, (8,))
    try:
        pruned = prune(net, Plan(ratios={n: 0.5 for n in groups}, criterion=criterion), input_shape=SPEC,
                       calibration=(x, y))
    except AutopruneError as exc:
        assert "use l1, l2, taylor, random or an activation criterion" in str(exc)
        assert criterion in ("bn_scale", "fpgm")
        return
    assert pruned.model.bert.encoder.layer[0].attention.self.num_attention_heads == 2


def test_global_ratios_rank_heads_and_widths_without_the_graph_search():
    ratios = global_ratios(model("llama"), input_shape=SPEC, ratio=0.5)
    assert ratios and all(0.0 <= r < 1.0 for r in ratios.values())
    assert any(r > 0 for r in ratios.values())


def test_input_spec_keeps_its_dtype_through_pickling_and_data():
    spec = parse("16:int64")
    assert (tuple(spec), spec.dtype) == ((16,), "int64")
    again = pickle.loads(pickle.dumps(InputSpec((16,), dtype="int64", high=64)))
    assert (again.dtype, again.high, tuple(again)) == ("int64", 64, (16,))
    data = load_data("tests.transformer_models:classification_data").input_shape
    assert data.dtype == "int64" and 1 < data.high <= VOCAB and tuple(data) == (SEQ,)
    with pytest.raises(AutopruneError, match="'int64x' is not supported; use one of .*int64"):
        parse("16:int64x")
    with pytest.raises(AutopruneError, match="128:int64"):
        parse("sixteen")


@pytest.mark.parametrize("name,data,metric,loss", [
    ("bert", "padded_classification_data", "top1", "cross_entropy"),  # input_ids and attention_mask
    ("gpt2", "language_data", "next_token_top1", "lm_cross_entropy"),
    ("llama", "language_data", "perplexity", "lm_cross_entropy"),
])
def test_transformer_searches_end_to_end(name, data, metric, loss, tmp_path):
    from autoprune import search
    from autoprune.core.records import Status
    from tests.conftest import TINY_SINGLE

    result = search(budget="0.8x", model=f"tests.transformer_models:{name}", data=f"tests.transformer_models:{data}",
                    metric=metric, loss=loss, profile=TINY_SINGLE, trials=2, finetune_steps=3, confirm=0,
                    seed_plans="uniform,global,latency", landing_moves=0, out=tmp_path, quiet=True)
    done = result.trials[result.trials["status"] == Status.COMPLETED]
    assert len(done) >= 1, result.trials[["trial", "status", "error"]].to_string()
    ratios = done.filter(like="ratio.")
    assert any("attn" in c or "attention" in c for c in ratios.columns)
    assert (ratios.to_numpy() > 0).any()
    if data == "padded_classification_data":
        _applied_with_both_inputs(result)
    if metric == "perplexity":  # lower is better: the front, the best and the files say so
        _lower_is_better_throughout(result, done)
        _applied_and_reloaded_with_transformers(result)


def _applied_and_reloaded_with_transformers(result):
    """apply on the perplexity run: the pick is the lowest perplexity, and the model it writes reloads
    with transformers' own from_pretrained, equal to model.pt."""
    import transformers

    from autoprune import apply

    applied = apply(result.run_dir, epochs=0.1, quiet=True)
    report = applied.report
    assert (report["metric"], report["metric_direction"]) == ("perplexity", "minimize")
    again = transformers.AutoModelForCausalLM.from_pretrained(report["files"]["hf"], trust_remote_code=True).eval()
    x = SPEC.example(2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=x, attention_mask=torch.ones_like(x)).logits,
                                   load_checkpoint(report["files"]["model"])(x))


def _applied_with_both_inputs(result):
    from autoprune import apply
    from autoprune.core.records import RunConfig

    assert RunConfig.read(result.run_dir, what="test").input_names == ["input_ids", "attention_mask"]
    applied = apply(result.run_dir, epochs=0.1, quiet=True, pick=str(result.trials["trial"].iloc[0]))
    assert applied.report["onnx_max_abs_diff"] < 1e-4  # checked on validation batches with their masks
    again = load_checkpoint(applied.model_path)
    x = {"input_ids": torch.tensor([[5, 9, 0, 0]]).repeat(1, SEQ // 4), "attention_mask": torch.ones(1, SEQ).long()}
    assert again(x).shape == (1, 3)


def _lower_is_better_throughout(result, done):
    import pandas as pd

    from autoprune.core.records import RunConfig

    conf = RunConfig.read(result.run_dir, what="test")
    assert (conf.metric_direction, conf.metric_percent) == ("minimize", False)
    assert done["accuracy"].min() >= 1.0  # a perplexity, not a fraction
    front = pd.read_csv(result.run_dir / "pareto.csv")
    # along the front, each slower plan has a lower perplexity than the faster ones
    assert front["accuracy"].is_monotonic_decreasing and front["latency_p50_ms"].is_monotonic_increasing
    within = done[done["meets_budget"].astype(bool)]
    if len(within):  # the best is the lowest perplexity, in the report too
        from autoprune.report.html import report_data

        data = report_data(result.run_dir)
        lowest = within.sort_values("accuracy").iloc[0]["trial"]
        assert data["best"] == lowest and (data["label"], data["higher_is_better"]) == ("perplexity", False)
