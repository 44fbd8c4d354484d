"""Config files as data: the one reader, ``extends``, dotted overrides, ``--set`` and error lines.

Scenarios (:mod:`envs.scenario`) and training configs (:mod:`agents.config`) are YAML files
validated by pydantic models. Everything they share lives here, so that a user's mistake reads
the same whichever file it is in:

* :func:`read_yaml_mapping`: one file, bounded (size, alias expansion), UTF-8, a mapping;
* :func:`load_document`: a file and the chain of files it ``extends:``, deep-merged, with cycle
  detection; a parent named by a relative path is found beside the file that names it;
* :func:`apply_overrides`: ``{"dotted.path": value}`` pairs set into a document, unknown paths
  refused with the keys that exist;
* :func:`parse_set_pairs`: the values of repeated ``--set key=value`` options;
* :func:`format_validation_error`: a pydantic ``ValidationError`` as one line naming the field,
  the value and what is allowed;
* :data:`Float` and :data:`Int`: number fields that refuse booleans (YAML's ``true`` is not 1)
  but accept numeric strings (PyYAML reads ``1e-4`` as a string).

Every function raises the caller's error class (a ``ValueError`` subclass, given as ``error``)
with a one-line message.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Mapping

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

#: A config file larger than this is refused before it is parsed (bytes).
MAX_FILE_BYTES = 1_000_000
#: A document whose aliases expand to more values than this is refused (a YAML "alias bomb").
MAX_NODES = 100_000


# --------------------------------------------------------------------------- number types


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the boolean {str(value).lower()}")
    return value


#: A float field that refuses ``true``/``false`` (pydantic alone would read them as 1.0/0.0).
Float = Annotated[float, BeforeValidator(_not_a_bool)]
#: An int field that refuses ``true``/``false``.
Int = Annotated[int, BeforeValidator(_not_a_bool)]


# --------------------------------------------------------------------------- reading


def _count_nodes(root: yaml.Node, source: str, error: type[ValueError]) -> int:
    """Values the document holds once its aliases are expanded; refuses recursive aliases and a
    key given twice in one mapping (YAML would keep the last one without a word)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise error(f"{source}: a YAML alias refers to itself (recursive documents are not allowed)")
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            keys: set = set()
            for k, _ in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if (k.tag, k.value) in keys:  # 1 and "1" are two keys
                        raise error(f"{source} line {k.start_mark.line + 1}: key '{k.value}' appears twice in one mapping "
                                    "(YAML would keep only the last); keep one")
                    keys.add((k.tag, k.value))
            total += sum(size(k) + size(v) for k, v in node.value)
        on_path.discard(key)
        sizes[key] = total
        if total > MAX_NODES:
            raise error(f"{source}: the document expands to more than {MAX_NODES} values (YAML aliases?); "
                        "a config this large is a mistake")
        return total

    return size(root)


def _load_bounded(text: str, source: str, error: type[ValueError]) -> Any:
    """Parse YAML (safe types only), refusing alias bombs; ``yaml.YAMLError`` propagates."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_nodes(node, source, error)
        return loader.construct_document(node)
    except RecursionError:
        raise error(f"{source}: the document is nested too deeply") from None
    finally:
        loader.dispose()


def parse_yaml_text(text: str, source: str, error: type[ValueError]) -> Any:
    """Parse YAML text bounded like a config file; malformed YAML is one line naming the line."""
    try:
        return _load_bounded(text, source, error)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{source}{where}: not valid YAML ({problem})") from None


def read_yaml_mapping(path: Path, what: str = "scenario", error: type[ValueError] = ValueError, empty_ok: bool = False) -> dict:
    """Read a YAML file that must hold a mapping; every problem is one-line ``error``.

    :param what: the kind of file, for messages (``scenario``, ``config``).
    :param empty_ok: an empty file reads as ``{}`` instead of an error.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{what} path is a directory, not a YAML file: {path}")
        with open(path, "rb") as f:  # bounded: a device or a pipe may never end
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{path}: too large for a {what} file (at most {MAX_FILE_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the file as UTF-8") from None
    data = parse_yaml_text(text, str(path), error)
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        article = "a training config" if what == "config" else f"a {what} file"
        raise error(f"{path}: {article} must be a mapping of keys to values")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise error(f"{path}: keys must be names, not {bad[0]!r}")
    return data


# --------------------------------------------------------------------------- extends


def resolve_reference(ref: Any, base_dir: Path | None, builtin_dir: Path, what: str, error: type[ValueError]) -> Path:
    """The file a name or path refers to.

    A bare name (no ``/``, no ``.yaml``) is a built-in file ``builtin_dir/NAME.yaml``; a relative
    path is relative to ``base_dir`` (the folder of the file that names it) or, when given on the
    command line (``base_dir=None``), to the current directory.
    """
    if not isinstance(ref, (str, Path)) or not str(ref).strip():
        raise error(f"a {what} must be a built-in name or a path to a .yaml file, not {ref!r}")
    text = str(ref)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path
    path = builtin_dir / f"{text}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in builtin_dir.glob("*.yaml")))
        raise error(f"unknown {what} '{text}': the built-in {what} names are {names} (or give a path to a .yaml file)")
    return path


def load_document(
    path: Path,
    *,
    builtin_dir: Path,
    what: str,
    error: type[ValueError],
    empty_ok: bool = False,
    after_merge: Callable[[dict, dict, Path], dict] | None = None,
    _seen: tuple[Path, ...] = (),
) -> dict:
    """A YAML mapping with its ``extends:`` chain resolved (the file's keys win, mappings merge).

    :param after_merge: ``f(doc, own, path)`` called on every level after its parent is merged,
        with ``own`` the file's own keys (``extends`` removed): a hook for keys that act on the
        merged document (a scenario's ``only_regions``). It returns the document.
    """
    path = Path(path)
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(p.name for p in (*_seen, resolved))
        raise error(f"{path}: 'extends' forms a cycle ({chain})")
    data = read_yaml_mapping(path, what=what, error=error, empty_ok=empty_ok)
    own = dict(data)
    parent = own.pop("extends", None)
    doc = dict(own)
    if "extends" in data:
        if parent is None:
            raise error(f"{path}: 'extends' is empty; give a built-in {what} name or a path")
        try:
            parent_path = resolve_reference(parent, resolved.parent, builtin_dir, what, error)
        except ValueError as exc:
            raise error(f"{path}: extends: {exc}") from None
        if not parent_path.exists():
            raise error(f"{path}: extends: {what} file not found: {parent_path}")
        base = load_document(parent_path, builtin_dir=builtin_dir, what=what, error=error, empty_ok=empty_ok,
                             after_merge=after_merge, _seen=(*_seen, resolved))
        doc = deep_merge(base, own)
    if after_merge is not None:
        doc = after_merge(doc, own, path)
    return doc


def deep_merge(base: dict, top: Mapping) -> dict:
    """Recursive dict merge: values of ``top`` win; mappings merge key by key."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- overrides


def apply_overrides(
    doc: dict,
    overrides: Mapping[str, Any] | None,
    where: str = "overrides",
    error: type[ValueError] = ValueError,
    open_sections: Iterable[str] = (),
) -> dict:
    """Set ``dotted.path: value`` pairs in a copy of a nested dict.

    A path must exist in ``doc``, except below a top-level key named in ``open_sections``
    (free-form sections validated elsewhere), where missing sections are created. A mapping set
    on a mapping merges into it.
    """
    doc = copy.deepcopy(doc)
    open_sections = set(open_sections)
    for dotted, value in (overrides or {}).items():
        keys = str(dotted).split(".")
        if any(not key for key in keys):
            raise error(f"{where}: '{dotted}' is not a dotted path (empty name between dots)")
        node = doc
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            prefix = ".".join(keys[:i]) or "top level"
            if not isinstance(node, dict):
                raise error(f"{where}: cannot set '{dotted}': '{prefix}' is a value, not a section")
            if key not in node:
                if keys[0] in open_sections and i > 0:
                    node[key] = {}
                else:
                    have = ", ".join(map(str, sorted(node))) or "(none)"
                    raise error(f"{where}: unknown key '{dotted}' ('{key}' is not in {prefix}; allowed: {have})")
            if last:
                if isinstance(value, Mapping) and isinstance(node[key], dict):
                    node[key] = deep_merge(node[key], value)
                else:
                    node[key] = copy.deepcopy(value)
            else:
                node = node[key]
    return doc


def parse_set_value(text: str, error: type[ValueError] = ValueError) -> Any:
    """Parse the value of a ``--set key=value`` as YAML (numbers, booleans, lists, strings).

    YAML 1.1 reads exponent notation without a dot (``1e-3``) as a string; such strings that
    are numbers become floats. Text that is not YAML stays a string.
    """
    try:
        value = _load_bounded(text, "--set value", error)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_set_pairs(pairs: Iterable[str], example: str = "budget.total=6", error: type[ValueError] = ValueError) -> dict[str, Any]:
    """``["budget.total=6", "deterministic=true"]`` -> ``{"budget.total": 6.0, "deterministic": True}``.

    The values of repeated ``--set key=value`` options, parsed with :func:`parse_set_value`;
    an item without ``=`` raises ``error`` with one line naming it.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise error(f"--set expects key=value (a dotted path, e.g. --set {example}), got '{pair}'")
        out[key.strip()] = parse_set_value(value, error)
    return out


# --------------------------------------------------------------------------- messages


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``Model``, ``Model | None``, ``dict[str, Model]``)."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _field_at(model: type[BaseModel], loc: tuple) -> tuple[type[BaseModel], Any]:
    """The (sub)model ``loc`` points into and the field info of its last named part (or None)."""
    info = None
    for part in loc:
        if not (isinstance(part, str) and part in model.model_fields):
            continue  # dict keys (region names) and list indices
        info = model.model_fields[part]
        sub = _submodel(info.annotation)
        if sub is None:
            break
        model = sub
    return model, info


def _allowed_range(info: Any) -> str:
    """The bounds of a field, e.g. ``0 < x <= 1000, a finite number``, or '' when it has none."""
    if info is None:
        return ""
    low = high = ""
    for m in info.metadata:
        if getattr(m, "gt", None) is not None:
            low = f"{m.gt} < "
        if getattr(m, "ge", None) is not None:
            low = f"{m.ge} <= "
        if getattr(m, "lt", None) is not None:
            high = f" < {m.lt}"
        if getattr(m, "le", None) is not None:
            high = f" <= {m.le}"
    return f"{low}x{high}, a finite number" if low or high else ""


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel]) -> str:
    """One line naming the first failing field of ``model``, its value and what is allowed.

    Unknown keys come first and missing keys last: a mistyped key is reported as the typo,
    not as the key it should have been.
    """
    errors = sorted(exc.errors(), key=lambda e: {"extra_forbidden": 0, "missing": 2}.get(e["type"], 1))
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        sub, _ = _field_at(model, err["loc"][:-1])
        return f"{source}: unknown key '{loc}'; allowed here: {', '.join(sub.model_fields)}"
    if err["type"] == "missing":
        return f"{source}: missing required key '{loc}'"
    if not err["loc"]:
        return f"{source}: {msg}"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list, tuple)) else f" = {value!r}"
    allowed = _allowed_range(_field_at(model, err["loc"])[1])
    allowed = f" (allowed: {allowed})" if allowed else ""
    extra = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return f"{source}: {loc}{shown}: {msg}{allowed}{extra}"


def load_data_file(ref: str | Path, builtin_dir: Path, what: str, model: type[BaseModel], error: type[ValueError]) -> tuple[Path, Any]:
    """A data file by built-in name (``builtin_dir/NAME.yaml``) or path, read with the bounds of
    :func:`read_yaml_mapping` and validated as ``model``: ``(path, instance)``; every problem is
    one-line ``error`` (history files, ensembles)."""
    path = resolve_reference(ref, None, builtin_dir, what, error)
    raw = read_yaml_mapping(path, what=what, error=error)
    try:
        return path, model.model_validate(raw)
    except ValidationError as exc:
        raise error(format_validation_error(exc, str(path), model)) from None
