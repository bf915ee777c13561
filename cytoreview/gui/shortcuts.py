"""Keyboard shortcuts of the workbench, in one table that the help and the bindings share.

Two kinds: window shortcuts (Qt, active wherever the focus is in the window, except while
typing in a text field) and mask-layer keys (napari key bindings of the ``mask`` Labels layer,
active when the canvas has the focus). napari's own Labels keys are listed too, for the help.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QShortcut, QWidget


@dataclass(frozen=True)
class Shortcut:
    """Keys for one action.

    Parameters
    ----------
    action
        Name of the action the panels provide (``next_image``...), or ``""`` for a key that
        napari itself handles.
    keys
        Qt key sequences (``"PgDown"``) for window shortcuts, napari key names
        (``"Control-z"``) for layer keys.
    description
        What the key does, for the help.
    """

    action: str
    keys: tuple[str, ...]
    description: str


#: Window-wide keys (Qt): image navigation.
WINDOW_SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("next_image", ("PgDown", "."), "open the next image of the table"),
    Shortcut("previous_image", ("PgUp", ","), "open the previous image of the table"),
    Shortcut("approve", ("Ctrl+Return",), "approve the current mask"),
)

#: Review panel keys (Qt, window-wide). Alt+letter: plain letters are napari's painting keys.
REVIEW_SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("review_accept", ("Alt+A",), "review: accept (approve) the mask of the current item"),
    Shortcut("review_edit", ("Alt+E",), "review: edit the mask (opens the Annotate tab)"),
    Shortcut("review_skip", ("Alt+S",), "review: skip (the item goes to the end of the queue)"),
    Shortcut("toggle_heatmap", ("Alt+M",), "show / hide the heatmap layer"),
)

#: Classes a teaching answer key exists for: the keys 1-9 (the herlev scheme has seven).
TEACH_ANSWER_KEYS = 9
_ORDINALS = ("1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th")
_EXAMPLES = (" (e.g. NILM)", " (e.g. ASC-US)", " (e.g. LSIL)", " (e.g. HSIL)")

#: Teaching keys (Qt, window-wide); the class keys are active only while a case is blind.
TEACH_SHORTCUTS: tuple[Shortcut, ...] = (
    *(
        Shortcut(
            f"teach_answer_{i + 1}",
            (str(i + 1),),
            f"teaching: answer the {_ORDINALS[i]} class{_EXAMPLES[i] if i < 4 else ''}",
        )
        for i in range(TEACH_ANSWER_KEYS)
    ),
    Shortcut("teach_next", ("Alt+N",), "teaching: next case"),
)

#: Keys bound on the mask layer (napari), on top of napari's own.
LAYER_SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("label_cytoplasm", ("c",), "paint cytoplasm"),
    Shortcut("label_nucleus", ("n",), "paint nucleus"),
    Shortcut("undo", ("Control-z",), "undo the last stroke (and save)"),
    Shortcut("redo", ("Control-Shift-z",), "redo (and save)"),
)

#: napari's Labels keys, listed for the help only.
NAPARI_LABEL_KEYS: tuple[Shortcut, ...] = (
    Shortcut("", ("2", "p"), "paint brush"),
    Shortcut("", ("4", "f"), "fill bucket"),
    Shortcut("", ("3",), "polygon (Enter closes it, Escape drops it)"),
    Shortcut("", ("1", "e"), "eraser"),
    Shortcut("", ("6", "z", "Space (hold)"), "pan and zoom"),
    Shortcut("", ("[", "]"), "smaller / larger brush"),
    Shortcut("", ("x",), "swap the selected label with background"),
)


def install_window_shortcuts(
    window: QWidget,
    actions: Mapping[str, Callable[[], Any]],
    table: tuple[Shortcut, ...] = WINDOW_SHORTCUTS,
) -> list[QShortcut]:
    """Create Qt shortcuts on ``window`` for every action of ``table`` given.

    Returns
    -------
    list of QShortcut
        Keep them (they are children of ``window`` and live as long as it does).
    """
    made = []
    for shortcut in table:
        slot = actions.get(shortcut.action)
        if slot is None:
            continue
        for key in shortcut.keys:
            qs = QShortcut(QKeySequence(key), window)
            qs.setContext(Qt.ShortcutContext.WindowShortcut)
            qs.activated.connect(slot)
            made.append(qs)
    return made


def bind_layer_keys(layer: Any, actions: Mapping[str, Callable[[], Any]]) -> None:
    """Bind :data:`LAYER_SHORTCUTS` on one napari layer (overriding napari's own keys)."""
    for shortcut in LAYER_SHORTCUTS:
        slot = actions.get(shortcut.action)
        if slot is None:
            continue
        for key in shortcut.keys:
            # napari passes the layer to the callback; the actions need no argument.
            layer.bind_key(key, _drop_layer(slot), overwrite=True)


def _drop_layer(slot: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_layer: Any) -> None:
        slot()

    return handler


#: Every table of keys with its heading, in the order the help lists them.
SHORTCUT_GROUPS: tuple[tuple[str, tuple[Shortcut, ...]], ...] = (
    ("Window", WINDOW_SHORTCUTS),
    ("Review", REVIEW_SHORTCUTS),
    ("Teaching", TEACH_SHORTCUTS),
    ("Mask layer", LAYER_SHORTCUTS),
    ("napari painting", NAPARI_LABEL_KEYS),
)


def shortcut_help() -> str:
    """All keys as an HTML table, for a help dialog or a tooltip."""
    rows = []
    for title, group in SHORTCUT_GROUPS:
        rows.append(f"<tr><td colspan=2><b>{title}</b></td></tr>")
        for shortcut in group:
            keys = " / ".join(shortcut.keys)
            rows.append(f"<tr><td>{keys}</td><td>{shortcut.description}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"
