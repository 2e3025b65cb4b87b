"""Templates: loading and validating the JSON files under ``data/templates``.

A template file is one JSON object::

    {"id": "tier1_club", "name": "...", "description": "...",
     "patterns": [{"name": "...", "category": "<a key of model.CATEGORY_GROUP>",
                   "weight": 0.4, "keywords": ["..."]}, ...],
     "channels": [{"hop_type": "<a model.HopType value>", "priority": 1}, ...]}

Every problem in every file is collected before anything is raised, and each
names the file and the field ("tier1_club.json: patterns[2].weight: 1.4 is
outside [0, 1]"), so a user fixes them all in one pass.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError
from engine.core.model import KNOWN_CATEGORIES, Channel, HopType, Pattern, Template, slugify
from engine.core.settings import SHIPPED_DATA_DIR

#: Where the shipped templates live.
DEFAULT_TEMPLATE_DIR = SHIPPED_DATA_DIR / "templates"

_TEMPLATE_FIELDS = {"id", "name", "description", "patterns", "channels"}
_PATTERN_FIELDS = {"name", "category", "weight", "keywords"}
_CHANNEL_FIELDS = {"hop_type", "priority"}
_HOP_TYPES = tuple(h.value for h in HopType)
_TEMPLATE_ID = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")


class TemplateInvalid(ConfigError):
    """One or more template files are invalid; ``problems`` lists each, naming file and field."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"invalid templates in {where}: " + "; ".join(self.problems))


def load_templates(directory: Path | str | None = None) -> dict[str, Template]:
    """Every ``*.json`` template in ``directory`` (default: the shipped ones), by template id.

    Raises ``TemplateInvalid`` (a ``ConfigError``) listing every problem found.
    """
    directory = Path(directory) if directory is not None else DEFAULT_TEMPLATE_DIR
    if not directory.is_dir():
        raise ConfigError(f"template directory {directory} does not exist: pass a directory of *.json templates")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ConfigError(f"no template files (*.json) in {directory}: add at least one template")
    templates: dict[str, Template] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    for path in files:
        try:
            template = parse_template_file(path)
        except TemplateInvalid as exc:
            problems.extend(exc.problems)
            continue
        if template.id in templates:
            problems.append(f"{path.name}: id: duplicate template id {template.id!r} (also in {origin[template.id]})")
            continue
        templates[template.id] = template
        origin[template.id] = path.name
    if problems:
        raise TemplateInvalid(str(directory), problems)
    return templates


def parse_template_file(path: Path | str) -> Template:
    """Read and validate one template file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateInvalid(str(path), [f"{path.name}: cannot be read ({exc})"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateInvalid(
            str(path), [f"{path.name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
        ) from None
    return parse_template(data, source=path.name)


def parse_template(data: Any, source: str = "<template>") -> Template:
    """Validate a decoded template object; ``source`` names it in messages."""
    problems: list[str] = []

    def bad(field: str, message: str) -> None:
        problems.append(f"{source}: {field}: {message}")

    if not isinstance(data, dict):
        raise TemplateInvalid(source, [f"{source}: expected a JSON object, got {_kind(data)}"])

    for key in sorted(set(data) - _TEMPLATE_FIELDS):
        bad(key, f"unknown field (allowed: {', '.join(sorted(_TEMPLATE_FIELDS))})")

    template_id = _required_str(data, "id", "id", bad)
    if template_id is not None and not _TEMPLATE_ID.fullmatch(template_id):
        bad("id", f"{template_id!r} must be lower-case letters and digits joined by '_' or '-' (e.g. 'tier1_club')")
        template_id = None
    name = _required_str(data, "name", "name", bad)
    description = data.get("description", "")
    if not isinstance(description, str):
        bad("description", f"must be a string, got {_kind(description)}")
        description = ""

    patterns = _parse_patterns(data, bad)
    channels = _parse_channels(data, bad)

    if problems:
        raise TemplateInvalid(source, problems)
    assert template_id is not None and name is not None
    return Template(
        id=template_id, name=name, patterns=tuple(patterns), channels=tuple(channels), description=description
    )


def _parse_patterns(data: dict, bad) -> list[Pattern]:
    raw = data.get("patterns")
    if raw is None:
        bad("patterns", "missing field (a list of {name, category, weight, keywords})")
        return []
    if not isinstance(raw, list) or not raw:
        bad("patterns", f"must be a non-empty list, got {_kind(raw)}")
        return []
    patterns: list[Pattern] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"patterns[{i}]"
        if not isinstance(item, dict):
            bad(where, f"expected an object, got {_kind(item)}")
            continue
        for key in sorted(set(item) - _PATTERN_FIELDS):
            bad(f"{where}.{key}", f"unknown field (allowed: {', '.join(sorted(_PATTERN_FIELDS))})")
        ok = True
        name = _required_str(item, "name", f"{where}.name", bad)
        if name is not None:
            slug = slugify(name)
            if not slug:
                bad(f"{where}.name", f"{name!r} has no letters or digits")
                ok = False
            elif slug in seen:
                bad(f"{where}.name", f"duplicate pattern {name!r} (same as patterns[{seen[slug]}])")
                ok = False
            else:
                seen[slug] = i
        else:
            ok = False
        category = _required_str(item, "category", f"{where}.category", bad)
        if category is not None and category not in KNOWN_CATEGORIES:
            bad(f"{where}.category", f"unknown category {category!r} (known: {', '.join(sorted(KNOWN_CATEGORIES))})")
            ok = False
        elif category is None:
            ok = False
        weight = item.get("weight")
        if weight is None:
            bad(f"{where}.weight", "missing field (the prior confidence, a number in [0, 1])")
            ok = False
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            bad(f"{where}.weight", f"must be a number in [0, 1], got {weight!r}")
            ok = False
        elif not 0.0 <= weight <= 1.0:
            bad(f"{where}.weight", f"{weight!r} is outside [0, 1]")
            ok = False
        keywords = item.get("keywords", [])
        if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
            bad(f"{where}.keywords", "must be a list of non-empty strings")
            ok = False
        # ok already implies the three are set; the checks repeat that for the type checker
        if ok and name is not None and category is not None and weight is not None:
            patterns.append(
                Pattern(name=name, category=category, weight=float(weight), keywords=tuple(k.strip() for k in keywords))
            )
    return patterns


def _parse_channels(data: dict, bad) -> list[Channel]:
    raw = data.get("channels")
    if raw is None:
        bad("channels", "missing field (a list of {hop_type, priority})")
        return []
    if not isinstance(raw, list) or not raw:
        bad("channels", f"must be a non-empty list, got {_kind(raw)}")
        return []
    channels: list[Channel] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"channels[{i}]"
        if not isinstance(item, dict):
            bad(where, f"expected an object, got {_kind(item)}")
            continue
        for key in sorted(set(item) - _CHANNEL_FIELDS):
            bad(f"{where}.{key}", f"unknown field (allowed: {', '.join(sorted(_CHANNEL_FIELDS))})")
        ok = True
        hop = _required_str(item, "hop_type", f"{where}.hop_type", bad)
        if hop is not None and hop not in _HOP_TYPES:
            bad(f"{where}.hop_type", f"unknown hop type {hop!r} (known: {', '.join(_HOP_TYPES)})")
            ok = False
        elif hop is not None and hop in seen:
            bad(f"{where}.hop_type", f"duplicate channel {hop!r} (same as channels[{seen[hop]}])")
            ok = False
        elif hop is None:
            ok = False
        else:
            seen[hop] = i
        priority = item.get("priority")
        if priority is None:
            bad(f"{where}.priority", "missing field (an integer >= 1; 1 is tried first)")
            ok = False
        elif isinstance(priority, bool) or not isinstance(priority, int) or priority < 1:
            bad(f"{where}.priority", f"must be an integer >= 1, got {priority!r}")
            ok = False
        # ok already implies both are set; the checks repeat that for the type checker
        if ok and hop is not None and priority is not None:
            channels.append(Channel(hop_type=HopType(hop), priority=priority))
    return channels


def _required_str(obj: dict, key: str, field: str, bad) -> str | None:
    value = obj.get(key)
    if value is None:
        bad(field, "missing field")
        return None
    if not isinstance(value, str) or not value.strip():
        bad(field, f"must be a non-empty string, got {value!r}")
        return None
    return value.strip()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )
