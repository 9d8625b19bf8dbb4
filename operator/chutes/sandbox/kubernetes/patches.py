"""Patch formats of the Kubernetes API: JSON merge patch, JSON patch and a strategic merge patch subset.

Strategic merge patch is approximated: lists of objects that all carry a merge key are merged by it
(``name`` for containers/env/volumes..., ``containerPort`` for ports, ``mountPath`` for volumeMounts,
``uid`` for ownerReferences, ``type`` for conditions); ``finalizers`` are merged as a set;
``$patch: delete`` removes a map key or list item, ``$patch: replace`` replaces,
``$deleteFromPrimitiveList/<field>`` removes values from a list of scalars; other ``$`` directives
(``$setElementOrder``, ``$retainKeys``) are dropped. Every other list is replaced, as with a merge patch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import jsonpointer

MERGE_KEYS: dict[str, str] = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name',
    'volumes': 'name', 'env': 'name', 'imagePullSecrets': 'name', 'volumeDevices': 'devicePath',
    'volumeMounts': 'mountPath', 'ports': 'containerPort', 'ownerReferences': 'uid',
    'conditions': 'type', 'hostAliases': 'ip', 'topologySpreadConstraints': 'topologyKey',
    'resourceClaims': 'name', 'schedulingGates': 'name',
}
SET_LISTS = frozenset({'finalizers'})


class PatchError(ValueError):
    """The patch cannot be applied; ``test_failed`` marks a failed JSON-patch ``test`` op."""

    def __init__(self, message: str, *, test_failed: bool = False) -> None:
        super().__init__(message)
        self.test_failed = test_failed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; a failing ``test`` raises ``PatchError(test_failed=True)``."""
    if not isinstance(operations, list):
        raise PatchError('a JSON patch must be a list of operations')
    try:
        return jsonpatch.apply_patch(target, operations, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(f'the test operation failed: {exc}', test_failed=True) from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise PatchError(f'the JSON patch cannot be applied: {exc}') from exc


def _strip_directives(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_directives(v) for k, v in value.items() if not str(k).startswith('$')}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value


def _merge_list(field: str, target: Sequence[Any], patch: Sequence[Any]) -> list[Any]:
    if field in SET_LISTS and all(isinstance(i, str) for i in [*target, *patch]):
        return [*target, *(item for item in patch if item not in target)]
    key = MERGE_KEYS.get(field)
    keyed = key is not None and all(isinstance(i, Mapping) and key in i for i in [*target, *patch])
    if key is None or not keyed:
        return [_strip_directives(item) for item in patch if not (isinstance(item, Mapping) and '$patch' in item)]
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        index = next((i for i, old in enumerate(result) if old[key] == item[key]), None)
        directive = item.get('$patch')
        if directive == 'delete':
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        elif directive == 'replace':
            result[index] = _strip_directives(item)
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """An approximation of Kubernetes' strategic merge patch (see the module docstring)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        return _strip_directives(patch)
    if patch.get('$patch') == 'delete':
        return None
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        field = str(key).removeprefix('$deleteFromPrimitiveList/')
        if field != key and isinstance(result.get(field), list) and isinstance(value, list):
            result[field] = [item for item in result[field] if item not in value]
        if str(key).startswith('$'):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(str(key), result[key], value)
        else:
            result[key] = _strip_directives(value)
    return result
