"""Object semantics of the apiserver on top of kmock's in-memory object store.

The ``Store`` keeps every object in kmock's ``ObjectsArray`` (so ``emulator.objects[res, ns, name]``
still works, with history) and adds what a real apiserver does on writes: uid, creationTimestamp,
a cluster-wide monotonic resourceVersion, generation (bumped on spec changes only), the namespace from
the URL, ``generateName``, optimistic concurrency (409), status/main-endpoint split, finalizer-aware
deletion, Secret ``stringData``, CRD registration, and one watch event log per resource.

All methods are synchronous and must run on the emulator's event loop: there is never an ``await``
between reading and writing, which makes every operation atomic and list-then-watch race-free.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import kmock

from chutes.sandbox.kubernetes import errors, patches, validation
from chutes.sandbox.kubernetes.discovery import crd_resources, crd_selectable_fields
from chutes.sandbox.kubernetes.eventlog import Event, EventLog
from chutes.sandbox.kubernetes.paths import Target
from chutes.sandbox.kubernetes.selectors import ALWAYS_FIELDS, BUILTIN_FIELDS, Selector

JSON = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]

NAMESPACES = Target('', 'v1', 'namespaces')
CRDS = Target('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')
SECRETS = Target('', 'v1', 'secrets')
EVENT_RESOURCES = frozenset({('', 'events'), ('events.k8s.io', 'events')})
RETURNS_DELETED_OBJECT = frozenset({('', 'pods')})  # built-ins whose immediate DELETE answers with the object
SERVER_MANAGED = ('uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation',
                  'selfLink', 'name', 'namespace')
NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'

MERGE_PATCH = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def meta_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get('metadata')
    return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True)
class DeleteOptions:
    propagation: str = 'Background'  # Background, Foreground (treated as Background) or Orphan
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False

    @classmethod
    def parse(cls, body: Any, params: Mapping[str, str]) -> DeleteOptions:
        body = body if isinstance(body, Mapping) else {}
        preconditions = body.get('preconditions') or {}
        dry_run = body.get('dryRun') or params.get('dryRun')
        propagation = body.get('propagationPolicy') or params.get('propagationPolicy') or 'Background'
        if body.get('orphanDependents') is True or params.get('orphanDependents') == 'true':
            propagation = 'Orphan'
        if propagation not in ('Background', 'Foreground', 'Orphan'):
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{propagation}"')
        return cls(propagation, preconditions.get('uid'), preconditions.get('resourceVersion'), bool(dry_run))


class Store:
    """Objects, discovery registry and event logs; see the module docstring."""

    def __init__(self, objects: kmock.ObjectsArray, resources: kmock.ResourcesArray, *,
                 event_log_size: int = 10_000, strict_namespaces: bool = True) -> None:
        self.objects = objects
        # The live objects by resource, then (namespace, name): what reads answer from, in time proportional to
        # the resource's objects (kmock's array, kept for its history, is scanned whole and wraps every value).
        self.index: dict[kmock.resource, dict[tuple[str | None, str], JSON]] = {}
        self.resources = resources
        # kmock's own dict behind ``resources`` (a live view): ResourcesArray's key parsing is slow.
        self.infos: dict[kmock.resource, kmock.ResourceInfo] = resources._resources
        self.event_log_size = event_log_size
        self.strict_namespaces = strict_namespaces
        self.rv = 100
        self.logs: dict[kmock.resource, EventLog] = {}
        self.custom: set[kmock.resource] = set()  # resources served like custom resources (CRD semantics)
        self.field_labels: dict[kmock.resource, frozenset[str]] = {}
        self.crd_entries: dict[str, list[kmock.resource]] = {}  # CRD name -> resources it registered
        # A CRD's other served versions -> its storage version (conversion strategy None: one object, served at
        # every version with only its apiVersion rewritten).
        self.stored_as: dict[kmock.resource, kmock.resource] = {}
        self.orphaned: set[str] = set()  # uids of owners deleted with propagationPolicy=Orphan
        self.on_change: Callable[[], None] = lambda: None  # wakes up the garbage collector
        self.closed = False

    # --- registry -------------------------------------------------------------------------------

    def register(self, resource: kmock.resource, info: kmock.ResourceInfo, *, custom: bool,
                 fields: frozenset[str] = frozenset()) -> None:
        self.infos[resource] = info
        (self.custom.add if custom else self.custom.discard)(resource)
        builtin = BUILTIN_FIELDS.get((resource.group or '', resource.plural or ''), frozenset())
        self.field_labels[resource] = ALWAYS_FIELDS | builtin | fields

    def registry(self) -> dict[kmock.resource, kmock.ResourceInfo]:
        return dict(self.infos)

    def info(self, target: Target) -> kmock.ResourceInfo:
        info = self.infos.get(target.resource) if target.plural else None
        if info is None:
            raise errors.unknown_resource()
        return info

    def is_custom(self, target: Target) -> bool:
        return target.resource in self.custom

    def allowed_fields(self, target: Target) -> frozenset[str]:
        builtin = BUILTIN_FIELDS.get((target.group, target.plural), frozenset())
        return self.field_labels.get(target.resource, ALWAYS_FIELDS | builtin)

    def check(self, target: Target, namespace: str | None, verb: str, *, collection: bool = False
              ) -> kmock.ResourceInfo:
        """The resource's info, after checking that it is served with this verb at this URL scope."""
        info = self.info(target)
        if info.namespaced and namespace is None and not (collection and verb in ('list', 'watch')):
            raise errors.unknown_resource()
        if not info.namespaced and namespace is not None:
            raise errors.unknown_resource()
        if info.verbs and verb not in info.verbs:
            raise errors.method_not_allowed(verb, target)
        return info

    def check_subresource(self, target: Target, info: kmock.ResourceInfo, subresource: str | None) -> None:
        if subresource is None:
            return
        if subresource == 'finalize' and target == NAMESPACES:
            return
        if subresource != 'status' or 'status' not in info.subresources:
            raise errors.unknown_resource()

    # --- reading --------------------------------------------------------------------------------

    def current(self, key: Key) -> JSON | None:
        """The live object at `key` (the stored dict: copy it before changing it), None if there is none."""
        objects = self.index.get(key[0])
        return None if objects is None else objects.get((key[1], key[2]))

    def live(self, resource: kmock.resource | None = None) -> Iterator[tuple[Key, JSON]]:
        """Every live object, or those of `resource`; a snapshot (changes while iterating are not seen)."""
        groups = [(resource, self.index.get(resource, {}))] if resource is not None else list(self.index.items())
        for res, objects in groups:
            for (namespace, name), obj in list(objects.items()):
                yield (res, namespace, name), obj

    def key(self, target: Target, info: kmock.ResourceInfo, namespace: str | None, name: str) -> Key:
        return target.resource, namespace if info.namespaced else None, name

    def get(self, target: Target, namespace: str | None, name: str) -> JSON:
        info = self.check(target, namespace, 'get')
        obj = self.current(self.key(target, info, namespace, name))
        if obj is None:
            raise errors.not_found(target, name)
        return obj

    def matching(self, target: Target, namespace: str | None, selector: Selector) -> list[JSON]:
        items = [obj for (ns, _), obj in self.index.get(target.resource, {}).items()
                 if (namespace is None or ns == namespace) and selector.matches(obj)]
        items.sort(key=lambda obj: (meta_of(obj).get('namespace') or '', meta_of(obj).get('name') or ''))
        return items

    def list(self, target: Target, namespace: str | None, selector: Selector, *,
             limit: int | None = None, continue_token: str | None = None) -> JSON:
        info = self.check(target, namespace, 'list', collection=True)
        items = self.matching(target, namespace, selector)
        rv, list_meta = self.rv, {}
        if continue_token:
            try:
                state = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                rv, start = int(state['rv']), tuple(state['start'])
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise errors.bad_request(f'invalid continue token: {exc}') from exc
            items = [o for o in items if (meta_of(o).get('namespace') or '', meta_of(o).get('name') or '') > start]
        if limit and limit > 0 and len(items) > limit:
            last = meta_of(items[limit - 1])
            state = {'rv': rv, 'start': [last.get('namespace') or '', last.get('name') or '']}
            list_meta = {'continue': base64.urlsafe_b64encode(json.dumps(state).encode()).decode(),
                         'remainingItemCount': len(items) - limit}
            items = items[:limit]
        return {
            'apiVersion': target.api_version,
            'kind': f'{info.kind or target.plural.capitalize()}List',
            'metadata': {'resourceVersion': str(rv), **list_meta},
            'items': items,
        }

    def log(self, target: Target) -> EventLog:
        resource = target.resource
        if resource not in self.logs:
            self.logs[resource] = EventLog(self.event_log_size)
        return self.logs[resource]

    # --- writing --------------------------------------------------------------------------------

    def create(self, target: Target, namespace: str | None, body: Any, *, dry_run: bool = False) -> JSON:
        info = self.check(target, namespace, 'create')
        if not isinstance(body, Mapping):
            raise errors.bad_request('the body of the request must be a JSON object')
        obj = copy.deepcopy(dict(body))
        meta = obj.get('metadata') or {}
        if not isinstance(meta, dict):
            raise errors.bad_request('metadata must be an object')
        if info.namespaced:
            if meta.get('namespace') not in (None, '', namespace):
                raise errors.bad_request('the namespace of the provided object does not match the namespace '
                                         'sent on the request')
            meta['namespace'] = namespace
        else:
            meta.pop('namespace', None)
        obj = self._typed(target, info, obj, meta)
        if info.namespaced and namespace is not None and (target.group, target.plural) not in EVENT_RESOURCES:
            self._check_namespace_open(target, namespace)
        if not meta.get('name'):
            if not meta.get('generateName'):
                raise errors.invalid(target, None, 'metadata.name: Required value: name or generateName is required')
            meta['name'] = self._generate_name(target, info, namespace, str(meta['generateName']))
        key = self.key(target, info, namespace, str(meta['name']))
        if self.current(key) is not None:
            raise errors.already_exists(target, key[2])
        for field in ('resourceVersion', 'managedFields', *SERVER_MANAGED[:-2]):
            meta.pop(field, None)
        if 'status' in info.subresources:
            obj.pop('status', None)
        self._prepare(target, None, obj)
        if problems := validation.metadata_problems(target, obj):
            raise errors.invalid(target, key[2], ', '.join(problems))
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if dry_run:
            return obj
        return self._commit(target, key, None, obj)

    def replace(self, target: Target, namespace: str | None, name: str, body: Any, *,
                subresource: str | None = None, dry_run: bool = False) -> JSON:
        info = self.check(target, namespace, 'update')
        self.check_subresource(target, info, subresource)
        key = self.key(target, info, namespace, name)
        old = self.current(key)
        if old is None:
            raise errors.not_found(target, name)
        if not isinstance(body, Mapping):
            raise errors.bad_request('the body of the request must be a JSON object')
        new = copy.deepcopy(dict(body))
        meta = new['metadata'] if isinstance(new.get('metadata'), dict) else {}
        if meta.get('name') != name:
            raise errors.bad_request(f'the name of the object ({meta.get("name")}) does not match the name on the '
                                     f'URL ({name})')
        if not meta.get('resourceVersion') and self.is_custom(target):
            raise errors.invalid(target, name, 'metadata.resourceVersion: Invalid value: 0x0: must be specified '
                                               'for an update')
        self._typed(target, info, new, meta)
        return self._update(target, info, key, old, new, subresource=subresource, dry_run=dry_run)

    def patch(self, target: Target, namespace: str | None, name: str, body: Any, content_type: str, *,
              subresource: str | None = None, dry_run: bool = False) -> tuple[int, JSON]:
        info = self.check(target, namespace, 'patch')
        self.check_subresource(target, info, subresource)
        key = self.key(target, info, namespace, name)
        old = self.current(key)
        media = content_type.split(';')[0].strip().lower()
        if old is None:
            if media == APPLY_PATCH and subresource is None and isinstance(body, Mapping):
                obj = copy.deepcopy(dict(body))
                obj.setdefault('metadata', {}).setdefault('name', name)
                if obj['metadata'].get('name') != name:
                    raise errors.bad_request('the name of the object does not match the name on the URL')
                return 201, self.create(target, namespace, obj, dry_run=dry_run)
            raise errors.not_found(target, name)
        base = copy.deepcopy(old)
        try:
            if media == JSON_PATCH:
                new = patches.json_patch(base, body)
            elif media in (MERGE_PATCH, APPLY_PATCH):
                if not isinstance(body, Mapping):
                    raise errors.bad_request('the body of the patch must be a JSON object')
                new = patches.merge_patch(base, body)
            elif media == STRATEGIC_MERGE_PATCH and not self.is_custom(target):
                if not isinstance(body, Mapping):
                    raise errors.bad_request('the body of the patch must be a JSON object')
                new = patches.strategic_merge_patch(base, body)
            else:
                raise errors.unsupported_media_type(media)
        except patches.PatchError as exc:
            raise errors.StatusError(422, 'Invalid', str(exc)) from exc
        if not isinstance(new, dict):
            raise errors.StatusError(422, 'Invalid', 'the patched object is not a JSON object')
        return 200, self._update(target, info, key, old, new, subresource=subresource, dry_run=dry_run)

    def delete(self, target: Target, namespace: str | None, name: str, options: DeleteOptions
               ) -> tuple[int, JSON]:
        info = self.check(target, namespace, 'delete')
        key = self.key(target, info, namespace, name)
        old = self.current(key)
        if old is None:
            raise errors.not_found(target, name)
        meta = meta_of(old)
        if options.uid is not None and options.uid != meta.get('uid'):
            raise errors.conflict(target, name, f'Precondition failed: UID in precondition: {options.uid}, '
                                                f'UID in object meta: {meta.get("uid")}')
        if options.resource_version is not None and options.resource_version != meta.get('resourceVersion'):
            raise errors.conflict(target, name, 'Precondition failed: ResourceVersion in precondition: '
                                                f'{options.resource_version}, ResourceVersion in object meta: '
                                                f'{meta.get("resourceVersion")}')
        if options.dry_run:
            return 200, old
        if options.propagation == 'Orphan' and meta.get('uid'):
            self.orphaned.add(str(meta['uid']))
        return self.delete_key(key)

    def delete_collection(self, target: Target, namespace: str | None, selector: Selector,
                          options: DeleteOptions) -> JSON:
        info = self.check(target, namespace, 'deletecollection')
        deleted: list[JSON] = []
        for obj in self.matching(target, namespace, selector):
            if options.dry_run:
                deleted.append(obj)
                continue
            if options.propagation == 'Orphan' and meta_of(obj).get('uid'):
                self.orphaned.add(str(meta_of(obj)['uid']))
            deleted.append(self.delete_key(self.key(target, info, namespace or meta_of(obj).get('namespace'),
                                                    str(meta_of(obj).get('name'))))[1])
        if self.is_custom(target):
            return {'apiVersion': target.api_version, 'kind': f'{info.kind}List',
                    'metadata': {'resourceVersion': str(self.rv)}, 'items': deleted}
        return {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Success'}

    def delete_key(self, key: Key) -> tuple[int, JSON]:
        """Delete an existing object: mark it if finalizers hold it, remove it otherwise (Background GC)."""
        target = Target.of(key[0])
        old = self.current(key)
        if old is None:
            raise errors.not_found(target, key[2])
        meta = meta_of(old)
        if meta.get('deletionTimestamp'):
            return 202, old
        if meta.get('finalizers') or (target == NAMESPACES and (old.get('spec') or {}).get('finalizers')):
            new = copy.deepcopy(old)
            new['metadata'].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            if target == NAMESPACES:
                new.setdefault('status', {})['phase'] = 'Terminating'
            result = self._commit(target, key, old, new)
            self.on_change()
            return 202, result
        gone = self._remove(target, key, copy.deepcopy(old), old)
        if self.is_custom(target) or (target.group, target.plural) in RETURNS_DELETED_OBJECT:
            return 200, gone
        return 200, {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Success',
                     'details': {'name': key[2], 'group': target.group, 'kind': target.plural,
                                 'uid': meta.get('uid')}}

    def update_key(self, key: Key, change: Callable[[JSON], None]) -> JSON:
        """Apply a server-side change to a live object (used by the garbage collector)."""
        target = Target.of(key[0])
        old = self.current(key)
        if old is None:
            raise errors.not_found(target, key[2])
        new = copy.deepcopy(old)
        change(new)
        return self._commit(target, key, old, new)

    def close(self) -> None:
        self.closed = True
        for log in self.logs.values():
            log.wake()

    # --- internals ------------------------------------------------------------------------------

    def _typed(self, target: Target, info: kmock.ResourceInfo, obj: JSON, meta: JSON) -> JSON:
        """Check apiVersion and kind against the URL and put them (and metadata) first."""
        api_version, kind = obj.pop('apiVersion', None), obj.pop('kind', None)
        if api_version and api_version != target.api_version:
            raise errors.bad_request(f'the API version in the data ({api_version}) does not match the expected '
                                     f'API version ({target.api_version})')
        if kind and info.kind and kind != info.kind:
            raise errors.bad_request(f'the kind in the data ({kind}) does not match the expected kind ({info.kind})')
        obj.pop('metadata', None)
        rest = dict(obj)
        obj.clear()
        obj.update(apiVersion=target.api_version, kind=info.kind or kind, metadata=meta, **rest)
        return obj

    def _check_namespace_open(self, target: Target, namespace: str) -> None:
        if not self.strict_namespaces:
            return
        ns = self.current((NAMESPACES.resource, None, namespace))
        if ns is None:
            raise errors.not_found(NAMESPACES, namespace)
        if meta_of(ns).get('deletionTimestamp'):
            raise errors.StatusError(403, 'Forbidden', f'unable to create new content in namespace {namespace} '
                                                       'because it is being terminated',
                                     {'name': namespace, 'kind': target.plural, 'group': target.group})

    def _generate_name(self, target: Target, info: kmock.ResourceInfo, namespace: str | None, prefix: str) -> str:
        for _ in range(100):
            name = prefix + ''.join(random.choices(NAME_ALPHABET, k=5))
            if self.current(self.key(target, info, namespace, name)) is None:
                return name
        raise errors.StatusError(500, 'ServerTimeout', f'cannot generate a free name for {prefix!r}')

    def _prepare(self, target: Target, old: JSON | None, new: JSON) -> None:
        """Resource-specific normalisation before validation (create and main-endpoint updates)."""
        if target == SECRETS and isinstance(new.get('stringData'), Mapping):
            data = dict(new.get('data') or {})
            for k, v in new.pop('stringData').items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            new['data'] = data
        elif target == NAMESPACES and old is None:
            new.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
            new['status'] = {'phase': 'Active'}
        elif target == CRDS:
            self._prepare_crd(old, new)

    def _prepare_crd(self, old: JSON | None, new: JSON) -> None:
        try:
            entries = crd_resources(new)
        except ValueError as exc:
            raise errors.invalid(CRDS, meta_of(new).get('name'), str(exc)) from exc
        spec = new['spec']
        expected = f'{spec["names"]["plural"]}.{spec["group"]}'
        if meta_of(new).get('name') != expected:
            raise errors.invalid(CRDS, meta_of(new).get('name'), f'metadata.name: Invalid value: must be spec.names.'
                                                                 f'plural+"."+spec.group ({expected})')
        if not entries:
            raise errors.invalid(CRDS, expected, 'spec.versions: Invalid value: must have exactly one version '
                                                 'marked as storage version')
        names = dict(spec['names'])
        names.setdefault('singular', names['kind'].lower())
        names.setdefault('listKind', f'{names["kind"]}List')
        old_status = (old or {}).get('status') or {}
        timestamp = now()
        stored = list(old_status.get('storedVersions') or [])
        stored += [v['name'] for v in spec.get('versions') or [] if v.get('storage') and v['name'] not in stored]
        new['status'] = {
            'acceptedNames': names,
            'conditions': old_status.get('conditions') or [
                {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                 'message': 'no conflicts found', 'lastTransitionTime': timestamp},
                {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                 'message': 'the initial names have been accepted', 'lastTransitionTime': timestamp},
            ],
            'storedVersions': stored,
        }

    def _update(self, target: Target, info: kmock.ResourceInfo, key: Key, old: JSON, new: JSON, *,
                subresource: str | None, dry_run: bool) -> JSON:
        name = key[2]
        meta = new.get('metadata')
        if not isinstance(meta, dict):
            meta = new['metadata'] = {}
        old_meta = meta_of(old)
        wanted = meta.get('resourceVersion')
        if wanted not in (None, '') and str(wanted) != str(old_meta.get('resourceVersion')):
            raise errors.conflict(target, name)
        if meta.get('name', name) != name:
            raise errors.bad_request(f'the name of the object ({meta.get("name")}) does not match the name on the '
                                     f'URL ({name})')
        if meta.get('uid') not in (None, '') and meta['uid'] != old_meta.get('uid'):
            # A uid in a PUT or patch is not the object's: another object of that name (kube-apiserver's
            # immutable-field check, what clients use as a precondition on patches).
            raise errors.invalid(target, name, f'metadata.uid: Invalid value: "{meta["uid"]}": field is immutable')
        if info.namespaced and meta.get('namespace', key[1]) != key[1]:
            raise errors.bad_request('the namespace of the provided object does not match the namespace sent on '
                                     'the request')
        if subresource is not None:
            # /status (and a Namespace's /finalize) only change their own stanza; everything else is kept.
            result = copy.deepcopy(old)
            if subresource == 'status':
                if 'status' in new:
                    result['status'] = new['status']
                else:
                    result.pop('status', None)
            else:
                result.setdefault('spec', {})['finalizers'] = list((new.get('spec') or {}).get('finalizers') or [])
            new = result
        else:
            new['apiVersion'], new['kind'] = old.get('apiVersion'), old.get('kind')
            for field in SERVER_MANAGED:
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            meta.pop('managedFields', None)
            if 'status' in info.subresources:
                if 'status' in old:
                    new['status'] = old['status']
                else:
                    new.pop('status', None)
            if old_meta.get('deletionTimestamp'):
                added = [f for f in meta.get('finalizers') or [] if f not in (old_meta.get('finalizers') or [])]
                if added:
                    raise errors.invalid(target, name, 'metadata.finalizers: Forbidden: no new finalizers can be '
                                                       'added if the object is being deleted, found new finalizers '
                                                       f'{json.dumps(added)}')
            self._prepare(target, old, new)
            if problems := validation.metadata_problems(target, new):
                raise errors.invalid(target, name, ', '.join(problems))
            if self._spec(info, new) != self._spec(info, old):
                meta['generation'] = int(old_meta.get('generation') or 0) + 1
        new['metadata']['resourceVersion'] = old_meta.get('resourceVersion')
        if dry_run:
            return new
        return self._commit(target, key, old, new)

    @staticmethod
    def _spec(info: kmock.ResourceInfo, obj: JSON) -> JSON:
        """Everything that bumps metadata.generation when changed."""
        skip = {'metadata', 'apiVersion', 'kind'} | ({'status'} if 'status' in info.subresources else set())
        return {k: v for k, v in obj.items() if k not in skip}

    def _commit(self, target: Target, key: Key, old: JSON | None, new: JSON) -> JSON:
        if old is not None and old == new:
            return old  # a no-op: no new resourceVersion, no watch event
        meta = new['metadata']
        if old is not None and meta.get('deletionTimestamp') and not meta.get('finalizers') and not (
                target == NAMESPACES and (new.get('spec') or {}).get('finalizers')):
            return self._remove(target, key, new, old)
        self.rv += 1
        meta['resourceVersion'] = str(self.rv)
        if old is None:
            if key in self.objects:
                self.objects[key].create(new)
            else:
                self.objects[key] = new
            self._emit(target, 'ADDED', new, None)
        else:
            self.objects[key].history.append(new)
            self._emit(target, 'MODIFIED', new, old)
        self.index.setdefault(key[0], {})[key[1], key[2]] = new
        if target == CRDS:
            self._register_crd(new)
        if meta.get('ownerReferences'):
            self.on_change()
        return new

    def _remove(self, target: Target, key: Key, final: JSON, old: JSON) -> JSON:
        self.rv += 1
        final['metadata']['resourceVersion'] = str(self.rv)
        self.objects[key].history.append(final)
        self.objects[key].delete()
        self.index.get(key[0], {}).pop((key[1], key[2]), None)
        self._emit(target, 'DELETED', final, old)
        if target == CRDS:
            self._unregister_crd(str(meta_of(final).get('name')), purge=True)
        self.on_change()
        return final

    def _emit(self, target: Target, kind: str, obj: JSON, old: JSON | None) -> None:
        self.log(target).append(Event(self.rv, kind, obj, old))

    def _register_crd(self, crd: JSON) -> None:
        name = str(meta_of(crd).get('name'))
        self._unregister_crd(name, purge=False)
        fields = crd_selectable_fields(crd)
        for resource, info in crd_resources(crd):
            self.register(resource, info, custom=True, fields=fields.get(resource, frozenset()))
        self.crd_entries[name] = [resource for resource, _ in crd_resources(crd)]
        spec = crd.get('spec') or {}
        storage = next((v['name'] for v in spec.get('versions') or [] if v.get('storage')), None)
        if storage is not None:
            stored = Target(spec['group'], storage, spec['names']['plural']).resource
            for resource in self.crd_entries[name]:
                if resource != stored:
                    self.stored_as[resource] = stored

    def storage_target(self, target: Target) -> Target:
        """Where objects of `target` live: the storage version of its CRD (itself for any other resource)."""
        stored = self.stored_as.get(target.resource)
        return target if stored is None else Target.of(stored)

    def _unregister_crd(self, name: str, *, purge: bool) -> None:
        for resource in self.crd_entries.get(name, []):
            self.stored_as.pop(resource, None)
        for resource in self.crd_entries.pop(name, []):
            if purge:
                for key, obj in list(self.live(resource)):
                    self._remove(Target.of(resource), key, copy.deepcopy(obj), obj)
            self.infos.pop(resource, None)
            self.custom.discard(resource)
            self.field_labels.pop(resource, None)
