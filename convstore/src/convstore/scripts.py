"""The store's Lua scripts: one file each in ``lua/``, loaded once, each with the prelude.

Every script touches the keys of one conversation only (one hash slot), all named in KEYS;
the state hash's field names come from keys.py, as the table ``F``. Each starts with a Redis 7
shebang, kept as its first line, that says what it may do when Redis is full: ``#!lua`` (it
may grow memory: refused whole, before it runs), ``flags=allow-oom`` (it only frees memory:
trims and deletes free a full Redis) or ``flags=no-writes`` (it only reads).
"""

from functools import cache
from importlib.resources import files

from convstore import keys

_FIELDS = ", ".join(f"{name} = '{value}'" for name, value in keys.LUA_FIELDS.items())
NAMES = (
    "append",
    "update_state",
    "field_sizes",
    "replace",
    "split_doc",
    "trim_head",
    "trim_measure",
    "trim_remove",
    "drop_archived",
    "reencode",
    "restore",
    "drop_if_unchanged",
)


@cache
def source(name: str) -> str:
    """The Lua source of the script ``name``, prelude first."""
    lua = files("convstore") / "lua"
    prelude = (lua / "prelude.lua").read_text()
    body = (lua / f"{name}.lua").read_text()
    shebang = ""
    if body.startswith("#!"):
        shebang, body = body.split("\n", 1)
        shebang += "\n"
    version = f"local LAYOUT_VERSION = {keys.LAYOUT_VERSION}\n"
    version += f"local SPLIT_MARKER = '{keys.SPLIT_MARKER.decode()}'"
    return f"{shebang}local F = {{{_FIELDS}}}\n{version}\n{prelude}\n{body}"
