"""``labelSelector`` and ``fieldSelector`` parsing and matching, as the apiserver does for list and watch.

Label selectors support ``=``, ``==``, ``!=``, ``in (...)``, ``notin (...)``, ``key`` (exists) and
``!key`` (does not exist). Field selectors support ``=``, ``==`` and ``!=`` on the fields the
apiserver allows for the resource (``metadata.name`` and ``metadata.namespace`` always); any other
field is refused with 400, like a real server does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from chutes.sandbox.kubernetes import errors

_KEY = r'[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?'
_SET_TERM = re.compile(rf'^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$')
_KEY_ONLY = re.compile(rf'^(?P<neg>!?)\s*(?P<key>{_KEY})$')
_VALUE = re.compile(r'^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$')

Matcher = Callable[[Mapping[str, Any]], bool]

# Fields the real apiserver accepts in fieldSelector beyond metadata.name/metadata.namespace.
BUILTIN_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ('', 'pods'): frozenset({
        'spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName',
        'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.podIPs', 'status.nominatedNodeName',
    }),
    ('', 'secrets'): frozenset({'type'}),
    ('', 'namespaces'): frozenset({'status.phase'}),
    ('', 'nodes'): frozenset({'spec.unschedulable'}),
    ('', 'replicationcontrollers'): frozenset({'status.replicas'}),
    ('', 'persistentvolumeclaims'): frozenset({'spec.volumeName'}),
    ('', 'events'): frozenset({
        'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
        'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath',
        'reason', 'reportingComponent', 'source', 'type',
    }),
    ('events.k8s.io', 'events'): frozenset({
        'regarding.kind', 'regarding.namespace', 'regarding.name', 'regarding.uid', 'regarding.apiVersion',
        'regarding.resourceVersion', 'regarding.fieldPath', 'reason', 'reportingController', 'type',
    }),
    ('apps', 'replicasets'): frozenset({'status.replicas'}),
    ('batch', 'jobs'): frozenset({'status.successful'}),
    ('certificates.k8s.io', 'certificatesigningrequests'): frozenset({'spec.signerName'}),
}
ALWAYS_FIELDS = frozenset({'metadata.name', 'metadata.namespace'})


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``(...)``."""
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        elif char == ',' and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return [term.strip() for term in terms if term.strip()]


def _check_value(value: str, selector: str) -> str:
    if not _VALUE.match(value):
        raise errors.bad_request(f'unable to parse requirement: invalid label value: "{value}" in "{selector}"')
    return value


def _label_term(term: str, selector: str) -> Matcher:
    if match := _SET_TERM.match(term):
        key, positive = match['key'], match['op'] == 'in'
        values = frozenset(_check_value(v.strip(), selector) for v in match['values'].split(','))
        if not values or values == {''}:
            raise errors.bad_request(f'unable to parse requirement: empty set of values in "{selector}"')

        def in_set(labels: Mapping[str, Any]) -> bool:
            return (labels.get(key) in values) if positive else (labels.get(key) not in values)

        return in_set
    for op in ('!=', '==', '='):
        if op in term:
            key, _, value = (part.strip() for part in term.partition(op))
            if not re.fullmatch(_KEY, key):
                raise errors.bad_request(f'unable to parse requirement: invalid label key "{key}" in "{selector}"')
            _check_value(value, selector)
            if op == '!=':
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if match := _KEY_ONLY.match(term):
        key, negated = match['key'], bool(match['neg'])
        return (lambda labels: key not in labels) if negated else (lambda labels: key in labels)
    raise errors.bad_request(f'unable to parse requirement: "{term}" in label selector "{selector}"')


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split('.'):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return '' if value is None else str(value)


def _field_term(term: str, selector: str, allowed: Collection[str]) -> Matcher:
    for op in ('!=', '==', '='):
        if op in term:
            path, _, value = (part.strip() for part in term.partition(op))
            if path not in allowed:
                raise errors.bad_request(f'field label not supported: {path}')
            if op == '!=':
                return lambda obj: _field_value(obj, path) != value
            return lambda obj: _field_value(obj, path) == value
    raise errors.bad_request(f'invalid selector: "{selector}"; can\'t understand "{term}"')


@dataclass(frozen=True)
class Selector:
    """A parsed combination of label and field selectors (all terms must hold)."""

    labels: tuple[Matcher, ...] = ()
    fields: tuple[Matcher, ...] = ()

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None,
              allowed_fields: Collection[str] = ALWAYS_FIELDS) -> Selector:
        labels = tuple(_label_term(t, label_selector or '') for t in _split_terms(label_selector or ''))
        fields = tuple(_field_term(t, field_selector or '', allowed_fields) for t in _split_terms(field_selector or ''))
        return cls(labels, fields)

    def with_name(self, name: str) -> Selector:
        """The same selector, restricted to one object name (a watch on a named URL)."""
        return Selector(self.labels, (*self.fields, lambda obj: _field_value(obj, 'metadata.name') == name))

    def __bool__(self) -> bool:
        return bool(self.labels or self.fields)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get('metadata') or {}).get('labels') or {}
        return all(term(labels) for term in self.labels) and all(term(obj) for term in self.fields)
