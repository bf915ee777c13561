"""The plugin interface: what a plugin declares, how it is found, and its settings.

Torch-free: the command-line parser and ``cytoreview plugins`` read it without loading any
model code. See ``plugins/README.md`` for how to write a plugin.
"""

from cytoreview.plugin_api.contributions import KINDS, Contribution, NoSettings, Plugin, Preset
from cytoreview.plugin_api.discovery import (
    ENTRY_POINT_GROUP,
    PluginCatalog,
    catalog,
    find,
    reset_catalog,
)
from cytoreview.plugin_api.examples import LabelledImage
from cytoreview.plugin_api.settings import (
    SettingSpec,
    describe_settings,
    option,
    settings_dict,
    settings_from,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "Contribution",
    "LabelledImage",
    "NoSettings",
    "Plugin",
    "PluginCatalog",
    "Preset",
    "SettingSpec",
    "catalog",
    "describe_settings",
    "find",
    "option",
    "reset_catalog",
    "settings_dict",
    "settings_from",
]
