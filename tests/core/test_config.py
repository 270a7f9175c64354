import dataclasses

import pytest

from jaxlab.core import config as config_lib


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    name: str = "sgd"


@dataclasses.dataclass
class Cfg:
    seed: int = 0
    widths: tuple[int, ...] = (8, 16)
    use_bias: bool = True
    limit: int | None = None
    pairs: tuple[tuple[int, int], ...] = ((1, 2),)
    opt: Opt = dataclasses.field(default_factory=Opt)


def test_override_parses_by_type():
    cfg = config_lib.override(Cfg(), ["seed=3", "opt.lr=1e-3", "widths=4,5,6", "use_bias=false",
                                      "limit=7", "opt.name=adam"])
    assert cfg == Cfg(seed=3, widths=(4, 5, 6), use_bias=False, limit=7, opt=Opt(lr=1e-3, name="adam"))
    assert isinstance(cfg.opt.lr, float) and isinstance(cfg.widths[0], int)
    assert config_lib.override(cfg, ["limit=none"]).limit is None
    # The original is untouched.
    assert Cfg().seed == 0


def test_nested_tuples_split_at_top_level_commas():
    cfg = config_lib.override(Cfg(), ["pairs=((48,64),(96, 112))"])
    assert cfg.pairs == ((48, 64), (96, 112))
    with pytest.raises(config_lib.ConfigError, match="pairs"):
        config_lib.override(Cfg(), ["pairs=((1,2,3),)"])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.override(Cfg(), ["opt.lrr=0.1"])
    msg = str(e.value)
    assert "opt.lrr" in msg and "opt.lr" in msg and "seed" in msg and "widths" in msg


@pytest.mark.parametrize("item, field", [("seed=1.5", "seed"), ("opt.lr=fast", "opt.lr"),
                                         ("use_bias=maybe", "use_bias"), ("widths=a,b", "widths")])
def test_wrong_type_names_field(item, field):
    with pytest.raises(config_lib.ConfigError, match=f"'{field}'"):
        config_lib.override(Cfg(), [item])


def test_section_and_malformed_overrides():
    with pytest.raises(config_lib.ConfigError, match="section"):
        config_lib.override(Cfg(), ["opt=3"])
    with pytest.raises(config_lib.ConfigError, match="key=value"):
        config_lib.override(Cfg(), ["seed"])


def test_dict_round_trip_and_checks():
    cfg = Cfg(seed=2, widths=(1, 2), opt=Opt(lr=0.5))
    d = config_lib.to_dict(cfg)
    assert d["widths"] == [1, 2]
    assert config_lib.from_dict(Cfg, d) == cfg
    d["opt"]["momentum"] = 0.9
    with pytest.raises(config_lib.ConfigError, match="opt.momentum"):
        config_lib.from_dict(Cfg, d)
    with pytest.raises(config_lib.ConfigError, match="seed"):
        config_lib.from_dict(Cfg, {"seed": "zero"})


def test_resolve_variant_and_file(tmp_path):
    table = {"default": Cfg, "smoke": lambda: Cfg(seed=9)}
    get = lambda v: config_lib.variants(table, v)
    assert config_lib.resolve("smoke", get).seed == 9
    with pytest.raises(config_lib.ConfigError, match="unknown config variant"):
        config_lib.resolve("huge", get)
    f = tmp_path / "mine.py"
    f.write_text(
        "import dataclasses\n"
        "@dataclasses.dataclass\nclass C:\n    x: int = 1\n"
        "def get_config(variant='a'):\n    return C(x={'a': 1, 'b': 2}[variant])\n")
    assert config_lib.resolve(str(f), get).x == 1
    assert config_lib.resolve(f"{f}:b", get).x == 2
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        config_lib.resolve(str(tmp_path / "missing.py"), get)
