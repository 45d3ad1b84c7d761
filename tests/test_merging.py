import pytest
import torch

from baselines.merging import (
    COMBINATION_TYPES, EQUAL_RANK_TYPES, MergeError, MergeSettings, merge_lora_adapters, merge_task_vectors,
)


def _adapter(model_factory, tmp_path, name, r, seed):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=r, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model_factory(), cfg)
    out = tmp_path / name
    peft_model.save_pretrained(out)
    return out


@pytest.fixture
def factory(tiny_tokenizer):
    from harness.synthetic.tiny import tiny_llama

    return lambda: tiny_llama(tiny_tokenizer, hidden_size=32, num_layers=1, seed=0)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("how", COMBINATION_TYPES)
def test_every_peft_combination_type_merges_lora_runs(factory, tmp_path, how):
    a = _adapter(factory, tmp_path, "a", 4, 1)
    b = _adapter(factory, tmp_path, "b", 4, 2)
    merged = merge_lora_adapters(factory(), [a, b], MergeSettings(how=how, density=0.5, seed=3))
    assert list(merged.peft_config) == ["default"]
    ids = torch.tensor([[0, 5, 9, 12]])
    out = _logits(merged, ids)
    assert torch.isfinite(out).all()
    again = merge_lora_adapters(factory(), [a, b], MergeSettings(how=how, density=0.5, seed=3))
    assert torch.equal(out, _logits(again, ids)), "merges must be reproducible for a seed (DARE is random)"


def test_svd_merge_of_an_adapter_with_itself_is_the_adapter(factory, tmp_path):
    from peft import PeftModel

    a = _adapter(factory, tmp_path, "a", 4, 1)
    single = PeftModel.from_pretrained(factory(), str(a))
    merged = merge_lora_adapters(factory(), [a, a], MergeSettings(how="svd", weights=(0.5, 0.5)))
    ids = torch.tensor([[0, 5, 9, 12]])
    assert torch.allclose(_logits(single, ids), _logits(merged, ids), atol=1e-5)


def test_unequal_ranks_are_refused_only_where_peft_needs_equal_ranks(factory, tmp_path):
    a = _adapter(factory, tmp_path, "a", 4, 1)
    b = _adapter(factory, tmp_path, "b", 8, 2)
    for how in EQUAL_RANK_TYPES:
        with pytest.raises(MergeError, match="needs equal ranks") as err:
            merge_lora_adapters(factory(), [a, b], MergeSettings(how=how))
        assert "r=4" in str(err.value) and "r=8" in str(err.value) and "ties_svd" in str(err.value)
    merged = merge_lora_adapters(factory(), [a, b], MergeSettings(how="cat"))
    assert merged.peft_config["default"].r == 12


def test_task_vector_merges(factory):
    base = factory().state_dict()
    p1 = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()}
    p2 = {k: v - 0.02 * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()}
    only_first = merge_task_vectors(base, [p1, p2], MergeSettings(how="linear", weights=(1.0, 0.0)))
    assert all(torch.allclose(only_first[k], p1[k], atol=1e-6) for k in base)
    for how in ("ties", "dare_ties", "dare_linear", "magnitude_prune"):
        merged = merge_task_vectors(base, [p1, p2], MergeSettings(how=how, density=0.5))
        assert all(torch.isfinite(v).all() for v in merged.values() if v.is_floating_point())
    # magnitude pruning at density 0.5 keeps about half of each task vector's entries
    pruned = merge_task_vectors(base, [p1, base], MergeSettings(how="magnitude_prune", density=0.5,
                                                                weights=(1.0, 1.0)))
    k = "model.layers.0.mlp.down_proj.weight"
    changed = (pruned[k] != base[k]).float().mean().item()
    assert 0.4 < changed < 0.6
    low = merge_task_vectors(base, [p1, p2], MergeSettings(how="ties_svd", svd_rank=2, density=0.8))
    assert torch.linalg.matrix_rank((low[k] - base[k]).float()).item() <= 2


def test_full_merge_errors(factory):
    base = factory().state_dict()
    with pytest.raises(MergeError, match="needs LoRA runs"):
        merge_task_vectors(base, [base, base], MergeSettings(how="cat"))
    with pytest.raises(MergeError, match="svd-rank"):
        merge_task_vectors(base, [base, base], MergeSettings(how="svd"))
    other = dict(base)
    other.pop("lm_head.weight")
    with pytest.raises(MergeError, match="different architectures"):
        merge_task_vectors(base, [base, other], MergeSettings(how="ties"))
    with pytest.raises(MergeError, match="one weight per run"):
        merge_task_vectors(base, [base, base], MergeSettings(how="ties", weights=(1.0,)))
