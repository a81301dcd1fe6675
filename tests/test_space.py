from pathlib import Path

import pytest

from autoprune.core.errors import ConfigError
from autoprune.space.space import GroupRange, SearchSpace, init_space
from tests.helpers import SHAPE


def test_init_space_covers_every_group_and_ties_residual_layers(demo_untrained):
    space = init_space(demo_untrained, input_shape=SHAPE, model_name="builtin:demo")
    assert "fc" not in space.groups  # the output layer keeps its classes
    # the stem and the convs feeding stage 1's residual adds share one group, hence one ratio
    stem = space.groups["stem.0"]
    assert {"stem.0", "layer1.0.conv2", "layer1.1.conv2"} <= set(stem.members)
    assert space.groups["layer2.0.conv2"].members == ["layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv2"]
    assert len(space.groups) == 9
    all_members = [m for g in space.groups.values() for m in g.members]
    assert len(all_members) == len(set(all_members))


def test_space_round_trips_and_validates_against_model(tmp_path, demo_untrained):
    space = init_space(demo_untrained, input_shape=SHAPE)
    path = space.save(tmp_path / "s.yaml")
    loaded = SearchSpace.load(path)
    assert loaded == space
    loaded.check_against(demo_untrained, input_shape=SHAPE, source=str(path))


def test_space_naming_missing_layer_says_which_and_lists_groups(tmp_path, demo_untrained):
    path = tmp_path / "s.yaml"
    path.write_text("groups:\n  layer9.conv1: {low: 0.0, high: 0.5}\n")
    space = SearchSpace.load(path)
    with pytest.raises(ConfigError) as info:
        space.check_against(demo_untrained, input_shape=SHAPE, source=str(path))
    msg = str(info.value)
    assert str(path) in msg and "groups.layer9.conv1" in msg and "no such layer" in msg and "stem.0" in msg


def test_space_naming_coupled_member_points_to_its_group(tmp_path, demo_untrained):
    space = SearchSpace(groups={"layer1.0.conv2": GroupRange()})
    with pytest.raises(ConfigError, match="coupled to 'stem.0'"):
        space.check_against(demo_untrained, input_shape=SHAPE, source="s.yaml")


@pytest.mark.parametrize(("body", "key"), [
    ("groups:\n  stem.0: {low: 0.0, high: 1.0}\n", "groups.stem.0.high"),
    ("groups:\n  stem.0: {low: -0.2}\n", "groups.stem.0.low"),
    ("groups:\n  stem.0: {low: 0.6, high: 0.3}\n", "groups.stem.0"),
    ("groups:\n  stem.0: {hgih: 0.3}\n", "groups.stem.0.hgih"),
    ("groups: {}\n", "groups"),
])
def test_bad_ranges_name_the_key_path(tmp_path, body, key):
    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(path)
    assert f"{path}: {key}:" in str(info.value)


def test_choices_cover_the_grid():
    assert GroupRange(low=0.1, high=0.3, step=0.1).choices() == [0.1, 0.2, 0.3]
    assert GroupRange(low=0.0, high=0.7, step=0.05).choices()[-1] == 0.7


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "search_spaces").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_spaces_fit_their_models(path):
    from autoprune.load.data import load_data
    from autoprune.load.models import load_model

    space = SearchSpace.load(path)
    model = load_model(space.model, trained=False)
    space.check_against(model, input_shape=load_data("builtin:digits").input_shape, source=str(path))
