"""Options of read-only actions: declared once, parsed by the command line, passed as keywords."""

import dataclasses
import json

import pytest

from jaxlab import cli
from jaxlab.core import actions


@dataclasses.dataclass
class _Config:
    seed: int = 0


def _show(config: _Config, workdir, scene: str | None = None, count: int = 1) -> dict:
    """Shows a run."""
    return {"scene": scene, "count": count}


def _actions():
    options = [actions.Option("--scene", metavar="FILE", help="a scene"),
               actions.Option("--count", type=int, help="how many")]
    show = actions.action(read_only=True, name="show", options=options)(_show)

    @actions.action(read_only=True)
    def plain(config: _Config, workdir) -> dict:
        """Reads a run."""
        return {}

    return actions.collect(show, plain)


def test_options_reach_the_action_as_keywords(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0}))
    show = _actions()["show"]
    assert [o.dest for o in show.options] == ["scene", "count"]
    assert show(None, tmp_path) == {"scene": None, "count": 1}
    assert show(None, tmp_path, scene="a", count=3) == {"scene": "a", "count": 3}
    with pytest.raises(TypeError, match="takes no option 'scenes'"):
        show(None, tmp_path, scenes="a")
    with pytest.raises(TypeError, match="takes no option"):
        _actions()["plain"](None, tmp_path, scene="a")


def test_parser_groups_options_by_action_and_omits_those_not_given():
    acts = _actions()
    parser = cli._method_parser("demo", acts)
    assert "options of show" in parser.format_help() and "--scene FILE" in parser.format_help()
    args = parser.parse_args(["show", "--workdir", "w", "--count", "2"])
    assert cli._action_options(parser, args, acts) == {"count": 2}
    args = parser.parse_args(["plain", "--workdir", "w", "--scene", "x"])
    with pytest.raises(SystemExit):
        cli._action_options(parser, args, acts)


@pytest.mark.parametrize("declare, words", [
    (lambda: actions.action(options=[actions.Option("--scene")])(_show), "read-only"),
    (lambda: actions.action(read_only=True, options=[actions.Option("--other")])(_show), "keyword parameter 'other'"),
    (lambda: actions.action(read_only=True, options=["--scene"])(_show), "actions.Option"),
    (lambda: actions.Option("scene"), "flags starting with '-'"),
    (lambda: actions.Option("--scene", default="x"), "signature"),
])
def test_bad_declarations_fail_where_the_action_is_defined(declare, words):
    with pytest.raises(TypeError, match=words):
        declare()


def test_options_may_not_shadow_the_command_line():
    def f(config: _Config, workdir, debug: bool = False) -> dict:
        """Reads a run."""

    acts = actions.collect(actions.action(read_only=True, options=[actions.Option("--dbg", dest="debug")])(f))
    with pytest.raises(TypeError, match="already uses"):
        cli._method_parser("demo", acts)

    def g(config: _Config, workdir, other: str | None = None) -> dict:
        """Reads a run."""

    acts = actions.collect(actions.action(read_only=True, options=[actions.Option("--workdir", dest="other")])(g))
    with pytest.raises(TypeError, match="--workdir"):
        cli._method_parser("demo", acts)
