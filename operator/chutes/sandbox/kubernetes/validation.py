"""The metadata validation every real apiserver applies: object names, label keys and values, finalizers.

Only ObjectMeta is validated; schemas of specs are not (no admission, no CRD schema validation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chutes.sandbox.kubernetes.paths import Target

_LABEL = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
DNS_LABEL = re.compile(rf'^{_LABEL}$')
DNS_SUBDOMAIN = re.compile(rf'^{_LABEL}(\.{_LABEL})*$')
QUALIFIED_NAME = re.compile(r'^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')
STANDARD_FINALIZERS = frozenset({'kubernetes', 'orphan', 'foregroundDeletion'})
DNS_LABEL_NAMED = frozenset({('', 'namespaces'), ('', 'services')})
PATH_SEGMENT_NAMED_GROUPS = frozenset({'rbac.authorization.k8s.io'})
MAX_ANNOTATIONS_SIZE = 256 * 1024


def name_problem(target: Target, name: str) -> str | None:
    if target.group in PATH_SEGMENT_NAMED_GROUPS:
        if name in ('.', '..') or '/' in name or '%' in name:
            return f'metadata.name: Invalid value: "{name}": may not contain "/" or "%", nor be "." or ".."'
        return None
    if (target.group, target.plural) in DNS_LABEL_NAMED:
        if len(name) > 63 or not DNS_LABEL.match(name):
            return (f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                    "alphanumeric characters or '-', and must start and end with an alphanumeric character")
        return None
    if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        return (f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    return None


def _qualified_key_problem(field: str, key: str) -> str | None:
    prefix, _, name = key.rpartition('/')
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return f'{field}: Invalid value: "{key}": prefix part must be a lowercase RFC 1123 subdomain'
    if len(name) > 63 or not QUALIFIED_NAME.match(name):
        return (f'{field}: Invalid value: "{key}": name part must consist of alphanumeric characters, '
                "'-', '_' or '.', must start and end with an alphanumeric character, and be at most 63 characters")
    return None


def metadata_problems(target: Target, obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get('metadata') or {}
    problems: list[str] = []
    name = meta.get('name')
    if isinstance(name, str) and (problem := name_problem(target, name)):
        problems.append(problem)
    labels = meta.get('labels') or {}
    if not isinstance(labels, Mapping):
        return [*problems, 'metadata.labels: Invalid value: must be a map of strings']
    for key, value in labels.items():
        if problem := _qualified_key_problem('metadata.labels', str(key)):
            problems.append(problem)
        if not isinstance(value, str) or (value and (len(value) > 63 or not QUALIFIED_NAME.match(value))):
            problems.append(f'metadata.labels: Invalid value: "{value}": a valid label must be an empty string or '
                            "consist of alphanumeric characters, '-', '_' or '.', and be at most 63 characters")
    annotations = meta.get('annotations') or {}
    if not isinstance(annotations, Mapping) or not all(isinstance(v, str) for v in annotations.values()):
        return [*problems, 'metadata.annotations: Invalid value: must be a map of strings']
    for key in annotations:
        if problem := _qualified_key_problem('metadata.annotations', str(key)):
            problems.append(problem)
    if sum(len(k) + len(v) for k, v in annotations.items()) > MAX_ANNOTATIONS_SIZE:
        problems.append('metadata.annotations: Too long: must have at most 262144 bytes')
    for finalizer in meta.get('finalizers') or []:
        if finalizer not in STANDARD_FINALIZERS and (
                '/' not in str(finalizer) or _qualified_key_problem('metadata.finalizers', str(finalizer))):
            problems.append(f'metadata.finalizers: Invalid value: "{finalizer}": name is neither a standard '
                            'finalizer name nor is it fully qualified')
    return problems
