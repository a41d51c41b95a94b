"""Loading `tunesmith.yaml`: YAML → typed config, dotted overrides, errors with file:line and a suggestion."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config.project import ProjectConfig
from tunesmith.errors import ConfigError


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `a.b=1` strings into a nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. data.max_length=1024)")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (for 'did you mean' suggestions)."""
    model: type[BaseModel] = ProjectConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return model
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return model
        model = nxt
    return model


def _yaml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = path + (key_node.value,)
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _format_validation_error(err: ValidationError, source: str, lines: dict[tuple[Any, ...], int]) -> str:
    messages = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p != "__root__")
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        line = lines.get(loc)
        where = f"{source}:{line}" if line else source
        if e["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            known = [f for f in owner.model_fields if f != "config_path"] if owner else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = (
                f" — did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?"
                if close
                else (f" (known keys here: {', '.join(known)})" if known else "")
            )
            messages.append(f"{where}: unknown key {dotted!r}{hint}")
        else:
            messages.append(f"{where}: {dotted}: {e['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(messages)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ProjectConfig:
    """Load `tunesmith.yaml` (or defaults when path is None) and apply dotted overrides."""
    raw: dict[str, Any] = {}
    text = ""
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / "tunesmith.yaml"
        if not p.is_file():
            raise ConfigError(f"config file {p} not found; create one with `tunesmith init DIR`")
        source = str(p)
        text = p.read_text(encoding="utf-8-sig")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of keys, not {type(loaded).__name__}")
        raw = loaded
    if overrides:
        raw = _merge(raw, parse_overrides(overrides))
    try:
        cfg = ProjectConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, _yaml_lines(text))) from None
    if path is not None:
        cfg.config_path = Path(source).resolve()
    return cfg


def with_overrides(cfg: ProjectConfig, overrides: list[str]) -> ProjectConfig:
    """A copy of `cfg` with dotted overrides applied (`train.micro_batch_size=8`)."""
    try:
        new = ProjectConfig.model_validate(_merge(cfg.model_dump(mode="json"), parse_overrides(overrides)))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, "overrides", {})) from None
    new.config_path = cfg.config_path
    return new


def dump_config(cfg: ProjectConfig) -> str:
    """The fully resolved config as YAML (saved beside every artefact)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def commented_yaml(model: type[BaseModel] = ProjectConfig, indent: int = 0) -> str:
    """Default config as YAML with each field's docstring above it (for `tunesmith init`)."""
    pad = "  " * indent
    out: list[str] = []
    instance = model()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        for line in (field.description or "").splitlines():
            out.append(f"{pad}# {line.strip()}")
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(commented_yaml(type(value), indent + 1))
        else:
            dumped = yaml.safe_dump({name: value}, default_flow_style=False, sort_keys=False).rstrip()
            out.extend(pad + line for line in dumped.splitlines())
    return "\n".join(out)
