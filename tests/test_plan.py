import pytest
from pydantic import ValidationError

from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.prune.plan import Plan


def test_plan_round_trips_through_yaml(tmp_path):
    plan = Plan(ratios={"stem.0": 0.25, "layer1.0.conv1": 0.5}, criterion="l2", round_to=8,
                base_model="builtin:demo", base_fingerprint="abc123")
    path = plan.save(tmp_path / "p.yaml")
    assert Plan.load(path) == plan


def test_plan_is_immutable():
    plan = Plan(ratios={"a": 0.1})
    with pytest.raises(ValidationError, match="frozen"):
        plan.criterion = "l2"


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_ratio_outside_unit_interval_names_file_key_and_value(tmp_path, ratio):
    path = tmp_path / "bad.yaml"
    path.write_text(f"ratios:\n  stem.0: {ratio}\n")
    with pytest.raises(ConfigError) as info:
        Plan.load(path)
    msg = str(info.value)
    assert str(path) in msg and "ratios" in msg and str(ratio) in msg and "[0, 1)" in msg


def test_unknown_key_and_unknown_criterion_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ratios: {a: 0.1}\nratio_typo: 3\n")
    with pytest.raises(ConfigError, match="ratio_typo.*unknown key"):
        Plan.load(path)
    path.write_text("ratios: {a: 0.1}\ncriterion: magic\n")
    with pytest.raises(ConfigError, match="criterion.*'magic'.*l1"):
        Plan.load(path)


def test_fingerprint_mismatch_is_refused():
    plan = Plan(ratios={"a": 0.1}, base_model="builtin:demo", base_fingerprint="aaaa")
    plan.check_base("aaaa", model="builtin:demo")
    with pytest.raises(AutopruneError, match="fingerprint aaaa.*bbbb"):
        plan.check_base("bbbb", model="other")
