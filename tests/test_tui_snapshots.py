"""Snapshots of the operator screens, fed with a fixed fleet (no clock, no control plane)."""

from __future__ import annotations

from typing import Any

import pytest

from fila.settings import Settings
from tui import demo
from tui.app import FilaApp

SMALL = (80, 24)
LARGE = (160, 48)


def app(start: str) -> FilaApp:
    return FilaApp(Settings(), fixed=demo.fleet(), start=start)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
@pytest.mark.parametrize("screen", ["overview", "instances", "workers"])
def test_main_screens(snap_compare: Any, screen: str, size: tuple[int, int]) -> None:
    assert snap_compare(app(screen), terminal_size=size)


def test_5000_instances_sorted_by_received_on_page_two(snap_compare: Any) -> None:
    """The fleet at ten times the reference: one page on screen, the rest counted."""
    fleet = FilaApp(Settings(), fixed=demo.fleet(5000), start="instances")
    presses = ["s", "s", "S", "right_square_bracket"]  # received, descending, next page
    assert snap_compare(fleet, press=presses, terminal_size=LARGE)


@pytest.mark.parametrize("screen", ["feedback", "cleanup", "webhooks", "deadletters"])
def test_other_screens(snap_compare: Any, screen: str) -> None:
    assert snap_compare(app(screen), terminal_size=SMALL)


def test_instances_filtered_and_sorted(snap_compare: Any) -> None:
    """`/` then typing narrows the table; `s` steps to the last-seen column, `S` reverses."""
    presses = ["slash", *"inst-01", "enter", *"s" * 11, "S"]
    assert snap_compare(app("instances"), press=presses, terminal_size=SMALL)


def test_edit_thresholds_refuses_inline(snap_compare: Any) -> None:
    """An out-of-range minimum shows the contract's rule in the modal."""
    presses = ["space", "down", "space", "e", "end", "backspace", "backspace", *"301"]
    assert snap_compare(app("instances"), press=presses, terminal_size=SMALL)


def test_help_and_command_bar(snap_compare: Any) -> None:
    assert snap_compare(app("overview"), press=["question_mark"], terminal_size=SMALL)


def test_history_screen(snap_compare: Any) -> None:
    assert snap_compare(app("history"), terminal_size=SMALL)


def test_instance_history_from_the_instances_screen(snap_compare: Any) -> None:
    """`h` on inst-001: its own change and the bulk change that set it, not the others."""
    assert snap_compare(app("instances"), press=["down", "h"], terminal_size=SMALL)
