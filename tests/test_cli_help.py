"""``nnxp train --help`` reads well: flags in groups, each with a description that fits one line."""

from __future__ import annotations

import argparse

from nnxp.cli import build_parser

GROUPS = ["data", "model", "optimisation", "output and checkpoints", "hardware",
          "distributed (mpiexec -n N nnxp train --distributed ...)"]


def _train_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["train"]


def test_train_flags_are_grouped_and_each_has_a_one_line_description(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps at the terminal's width: take a plain terminal's
    parser = _train_parser()
    groups = {g.title: g for g in parser._action_groups if g._group_actions}
    assert list(groups) == ["options", *GROUPS]
    assert [a.dest for a in groups["options"]._group_actions] == ["help"]  # every flag is in a group
    formatter = parser._get_formatter()
    width = formatter._width - formatter._max_help_position  # the help column of an 80-column terminal
    for group in GROUPS:
        for action in groups[group]._group_actions:
            text = formatter._expand_help(action)
            assert action.help and not action.help.startswith("("), action.option_strings
            assert len(text) <= width, f"{action.option_strings}: {len(text)} > {width} characters: {text!r}"
    assert len(parser.format_help().splitlines()) <= 64  # it was 114 lines, one flat list
