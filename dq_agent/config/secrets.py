"""``${ENV_VAR}`` and ``${file:/path}`` references in connector profiles and settings.

Secrets never live in YAML; they are looked up when the project is loaded, and a missing one is
reported with the variable's name and the place that asked for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dq_agent.config.yamlfile import NodePath, YamlDocument
from dq_agent.errors import ConfigIssue

_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_references(
    doc: YamlDocument, env: Mapping[str, str], base_dir: Path, *, sealed: bool = False
) -> tuple[Any, list[ConfigIssue]]:
    """Return ``doc.value`` with every reference substituted, and the issues found.

    The substituted values are added to ``doc.secrets``, so that no issue shows them.
    ``sealed``: the secrets are someone else's (a broker's) to read; every reference stays
    as it is written, and neither the environment nor any file is looked at.
    """
    if sealed:
        return doc.value, []
    issues: list[ConfigIssue] = []
    value = _resolve(doc.value, (), doc, env, base_dir, issues)
    return value, issues


# A secret (a password, a key file) is small; a larger file is not one (say, /dev/zero).
MAX_SECRET_BYTES = 64 * 1024


def _resolve(
    value: Any,
    path: NodePath,
    doc: YamlDocument,
    env: Mapping[str, str],
    base_dir: Path,
    issues: list[ConfigIssue],
) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, (*path, k), doc, env, base_dir, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, (*path, i), doc, env, base_dir, issues) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":  # "$$" is a literal dollar sign
            return "$"
        ref = match.group(1).strip()
        if ref.startswith("file:"):
            file = Path(ref[5:].strip()).expanduser()
            file = file if file.is_absolute() else base_dir / file
            try:
                with file.open("rb") as stream:
                    data = stream.read(MAX_SECRET_BYTES + 1)  # no further: it may be endless
            except OSError as exc:
                reason = exc.strerror or exc.__class__.__name__
                issues.append(doc.issue(path, f"cannot read secret file {file}: {reason}"))
                return ""
            try:
                if len(data) > MAX_SECRET_BYTES:
                    raise ValueError(f"more than {MAX_SECRET_BYTES // 1024} KiB")
                content = data.decode("utf-8").strip()
            except ValueError as exc:  # UnicodeDecodeError included; the content is not shown
                reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                issues.append(
                    doc.issue(path, f"secret file {file}: {reason}; expected a secret as text")
                )
                return ""
            doc.secrets.add(content)
            return content
        if not _VAR_NAME.fullmatch(ref):
            issues.append(
                doc.issue(path, f"expected ${{ENV_VAR}} or ${{file:/path}}, got ${{{ref}}}")
            )
            return ""
        if ref not in env:
            issues.append(doc.issue(path, f"environment variable {ref} is not set"))
            return ""
        doc.secrets.add(env[ref])
        return env[ref]

    return _REFERENCE.sub(substitute, value)
