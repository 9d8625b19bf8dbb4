"""``FaithfulEmulator``: kmock's ``KubernetesEmulator`` with the semantics a real kube-apiserver has.

kmock 0.8 dispatches every request through its DSL, matching it against the whole request history (the
cost grows with every request), and its fallbacks lack resourceVersions, PUT, status subresources,
selectors, watch resumption and more. This subclass keeps kmock's object store, resource registry and DSL
for user reactions (``emulator['patch', kmock.resource(...)] << 500``) but:

* records at most ``max_history`` requests and matches user reactions structurally against the one
  request at hand, so dispatch costs the same on the 10,000th request as on the first;
* answers everything else directly from a :class:`~chutes.sandbox.kubernetes.store.Store`;
* parses ``/api/v1/namespaces[/NAME]`` correctly and reports ``groupVersion: v1`` for the core group;
* streams watches from a per-resource event log (resume from ``resourceVersion``, 410 when too old,
  ``timeoutSeconds``, ``sendInitialEvents``, selector-aware ADDED/DELETED transitions);
* runs a background garbage collector for ownerReferences and namespace termination;
* counts every request in RBAC terms with the bearer token that sent it (``audit``).

A user reaction that answers a request replaces the emulator's answer and its effect: an injected
``<< 500`` on a PATCH means the patch was not applied (kmock 0.8 applied it anyway).

Must be used as an async context manager (``async with FaithfulEmulator() as emulator``) and served by
an aiohttp low-level server or ``kmock.Server``; :class:`~chutes.sandbox.kubernetes.thread.KubeSandbox`
does both in a thread of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import json
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering
from kmock._internal.apps import KMockError

from chutes.sandbox.kubernetes import discovery, errors
from chutes.sandbox.kubernetes.audit import ApiCall, describe
from chutes.sandbox.kubernetes.collector import Collector
from chutes.sandbox.kubernetes.eventlog import Event
from chutes.sandbox.kubernetes.paths import ApiPath, Level, Target, parse_path, resource_key
from chutes.sandbox.kubernetes.selectors import Selector
from chutes.sandbox.kubernetes.store import APPLY_PATCH, JSON, DeleteOptions, Store, meta_of

logger = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({'/healthz', '/livez', '/readyz'})
TRUE = frozenset({'true', '1'})


def _json_response(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(body).encode(), status=status, content_type='application/json')


def _event_line(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(',', ':')).encode() + b'\n'


def _header(request: kmock.Request, name: str) -> str:
    return next((str(v) for k, v in request.headers.items() if k.lower() == name), '')


@attrs.define(kw_only=True)
class FaithfulEmulator(kmock.KubernetesEmulator):
    """A Kubernetes API emulator faithful enough for kopf, the ``kubernetes`` client and Helm."""

    max_history: int | None = 256  # requests kept for kmock's request-history DSL; None keeps all
    event_log_size: int = 10_000  # watch events kept per resource for resumption
    strict_namespaces: bool = True  # refuse to create objects in absent or terminating namespaces
    default_resources: bool = True  # kmock's bundled built-ins + Traefik + kopf peering

    store: Store = attrs.field(init=False)
    audit: collections.Counter[ApiCall] = attrs.field(init=False, factory=collections.Counter)
    collector: Collector = attrs.field(init=False)
    _served: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        # Deliberately not calling super(): kmock's fallback reactions are replaced by direct dispatch.
        if self.max_history is not None:
            self._requests = collections.deque(maxlen=self.max_history)  # type: ignore[assignment]
        self.store = Store(self._objects, self._resources, event_log_size=self.event_log_size,
                           strict_namespaces=self.strict_namespaces)
        if self.default_resources:
            for resource, info in discovery.default_resources().items():
                self.store.register(resource, info, custom=resource.group in discovery.CRD_BACKED_GROUPS)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.collector = Collector(self.store)
        self.collector.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self.store.close()
        await self.collector.stop()
        await super().__aexit__(exc_type, exc_value, traceback)

    # --- public helpers (call them on the emulator's loop) -----------------------------------------

    def seed(self, resource: str | kmock.resource, body: Mapping[str, Any], namespace: str | None = None) -> JSON:
        """Create an object as the API would (stamped metadata, ADDED event). ``resource``: 'v1/secrets'..."""
        target = Target.of(kmock.resource(resource))
        info = self.store.info(target)
        namespace = (namespace or meta_of(body).get('namespace') or 'default') if info.namespaced else None
        return copy.deepcopy(self.store.create(target, namespace, body))  # the caller's to change

    def add_crd(self, manifest: Mapping[str, Any]) -> JSON:
        """Install a CustomResourceDefinition (stored as an object and registered in discovery)."""
        return self.seed('apiextensions.k8s.io/v1/customresourcedefinitions', manifest)

    # --- request intake -------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            if self.limit is not None and self._served >= self.limit:
                raise KMockError('Too many requests have been served so far.')
            request = await self._parse(raw_request)
            self.audit[describe(raw_request.method, parse_path(raw_request.path), raw_request.path,
                                raw_request.query, raw_request.headers)] += 1
            self._served += 1
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as exc:  # a user reaction failed mid-stream
                raw_response = exc.args[0]
                raise exc.__cause__ or exc from None
        except Exception as exc:
            if not isinstance(exc, errors.StatusError):
                logger.exception('The Kubernetes emulator failed to serve %s %s', raw_request.method,
                                 raw_request.path_qs)
            if self._errors:
                self._errors[-1].append(exc)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(exc)
            await self._stream_error(exc, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _parse(self, raw: aiohttp.web.BaseRequest) -> kmock.Request:
        body = await raw.read()
        text = body.decode('utf-8', errors='replace')
        data: Any = None
        if body:
            with contextlib.suppress(ValueError, yaml.YAMLError):
                data = yaml.safe_load(text) if raw.content_type == APPLY_PATCH else json.loads(text)
        path = parse_path(raw.path)
        resource = None if path.level in (Level.OTHER, Level.CORE_VERSIONS, Level.GROUPS) else resource_key(
            path.group, path.version, path.plural)
        action: kmock.action | None = None
        if path.level in (Level.COLLECTION, Level.OBJECT):
            watch = raw.method == 'GET' and raw.query.get('watch', '').lower() in TRUE
            action = kmock.action.WATCH if watch else {
                (Level.COLLECTION, 'GET'): kmock.action.LIST, (Level.COLLECTION, 'POST'): kmock.action.CREATE,
                (Level.OBJECT, 'GET'): kmock.action.FETCH, (Level.OBJECT, 'PATCH'): kmock.action.UPDATE,
                (Level.OBJECT, 'PUT'): kmock.action.UPDATE, (Level.OBJECT, 'DELETE'): kmock.action.DELETE,
            }.get((path.level, raw.method))
        return kmock.Request(
            id=self._served, raw_request=raw, url=raw.url, method=raw.method, params=dict(raw.query),
            headers=dict(raw.headers), cookies=dict(raw.cookies), data=data, body=body, text=text,
            action=action, resource=resource, namespace=path.namespace, name=path.name,
            subresource=path.subresource,
        )

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, errors.StatusError):
            return _json_response(exc.body(), exc.status)
        if isinstance(exc, kmock.KubernetesError):
            error = errors.StatusError(exc.status, exc.reason or type(exc).__name__, exc.message or repr(exc))
            return _json_response(error.body(), exc.status)
        error = errors.StatusError(500, 'InternalError', f'{type(exc).__name__}: {exc}')
        return _json_response(error.body(), 500)

    def _get_resources(self) -> list[kmock.resource]:
        return list(self.store.registry())  # only declared resources are served and discovered

    # --- user reactions (kmock DSL), matched in constant time -----------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        response = await self._react(request)
        if response is not None:
            return response
        try:
            return await self._serve(request, parse_path(request.url.path))
        except errors.StatusError as exc:
            return _json_response(exc.body(), exc.status)

    async def _react(self, request: kmock.Request) -> aiohttp.web.StreamResponse | None:
        if not self._payloads:
            return None
        # The same ordering as kmock: higher priority first, ties in the order of definition.
        priorities = [tuple(-p for p in payload.priorities) for payload in self._payloads]
        width = max(len(priority) for priority in priorities)
        padded = [priority + (0,) * (width - len(priority)) for priority in priorities]
        for index in sorted(range(len(padded)), key=lambda i: padded[i]):
            payload = self._payloads[index]
            if payload._disabled.is_set() or not self._sees(payload._source, request):
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:
                payload._disabled.set()
            except NotImplementedError:
                pass
            finally:
                if self.max_history is not None:
                    del payload._requests[:-self.max_history]
        return None

    def _sees(self, view: kmock.View, request: kmock.Request) -> bool:
        """Whether a DSL view would include this request, without scanning the request history."""
        if isinstance(view, kmock.Root):
            return view is self
        if isinstance(view, kmock.Filter) and type(view) is kmock.Filter:
            return bool(view.criteria(request)) and self._sees(view._source, request)
        if isinstance(view, kmock.Priority) and type(view) is kmock.Priority:
            return self._sees(view._source, request)
        if isinstance(view, kmock.OrGroup) and type(view) is kmock.OrGroup:
            return any(self._sees(source, request) for source in view._sources)
        if isinstance(view, kmock.AndGroup) and type(view) is kmock.AndGroup:
            return all(self._sees(source, request) for source in view._sources)
        if isinstance(view, kmock.Exclusion) and type(view) is kmock.Exclusion:
            return self._sees(view._source, request) and not any(
                self._sees(excluded, request) for excluded in view._exclusions)
        return request in view  # slices and live streams need the (capped) history

    # --- the API --------------------------------------------------------------------------------

    async def _serve(self, request: kmock.Request, path: ApiPath) -> aiohttp.web.StreamResponse:
        method = str(request.method.value).upper()
        if path.level in (Level.COLLECTION, Level.OBJECT):
            return await self._serve_resource(request, path, method)
        if method != 'GET':
            raise errors.StatusError(405, 'MethodNotAllowed', f'{method} is not allowed on {request.url.path}')
        resources = self.store.registry()
        document: Any = None
        match path.level:
            case Level.CORE_VERSIONS:
                document = discovery.core_versions_document(f'{request.url.host}:{request.url.port}')
            case Level.GROUPS:
                document = discovery.group_list_document(resources)
            case Level.GROUP:
                document = discovery.group_document(resources, path.group or '')
            case Level.GROUP_VERSION:
                document = discovery.resource_list_document(resources, path.group or '', path.version or '')
            case Level.OTHER if request.url.path in ('/', ''):
                groups = {f'/apis/{res.group}' for res in resources if res.group}
                versions = {f'/apis/{res.group}/{res.version}' for res in resources if res.group}
                document = {'paths': sorted({'/api', '/api/v1', '/apis', '/version', *HEALTH_PATHS, *groups,
                                             *versions})}
            case Level.OTHER if request.url.path == '/version':
                document = await self._serve_server_version(request)
            case Level.OTHER if request.url.path in HEALTH_PATHS:
                return aiohttp.web.Response(text='ok')
        if document is None:
            raise errors.unknown_resource()
        return _json_response(document)

    async def _serve_resource(self, request: kmock.Request, path: ApiPath, method: str
                              ) -> aiohttp.web.StreamResponse:
        stored = self.store.storage_target(path.target)
        if stored != path.target:  # another served version of a CRD (conversion None): only apiVersion differs
            return await self._serve_converted(request, path, method, stored)
        return await self._serve_stored(request, path, method)

    async def _serve_converted(self, request: kmock.Request, path: ApiPath, method: str, stored: Target
                               ) -> aiohttp.web.StreamResponse:
        """Serve `path` (a version other than the storage one) from the storage version, rewriting apiVersion
        both ways, as the apiserver's ``None`` conversion does (a watch is served as the storage version)."""
        requested = path.target.api_version
        data = request.data
        if isinstance(data, dict) and data.get('apiVersion') == requested:
            data['apiVersion'] = stored.api_version
        response = await self._serve_stored(request, dataclasses.replace(path, version=stored.version), method)
        if not isinstance(response, aiohttp.web.Response) or response.body is None:
            return response
        body = json.loads(bytes(response.body))  # type: ignore[arg-type]
        for obj in [body, *(body.get('items') or [] if isinstance(body, dict) else [])]:
            if isinstance(obj, dict) and obj.get('apiVersion') == stored.api_version:
                obj['apiVersion'] = requested
        return _json_response(body, response.status)

    async def _serve_stored(self, request: kmock.Request, path: ApiPath, method: str
                            ) -> aiohttp.web.StreamResponse:
        store, target, params = self.store, path.target, request.params
        namespace, name = path.namespace, path.name
        if request.body and request.data is None and method in ('POST', 'PUT', 'PATCH'):
            media = _header(request, 'content-type').split(';')[0].strip().lower()
            if 'json' in media or 'yaml' in media:
                raise errors.bad_request(f'the request body is not valid {media}')
            raise errors.unsupported_media_type(media)  # e.g. protobuf, which kubectl sends for built-ins
        dry_run = bool(params.get('dryRun'))
        if path.level is Level.COLLECTION:
            if method == 'GET' and params.get('watch', '').lower() in TRUE:
                return await self._watch(request, target, namespace, None)
            if method == 'GET':
                limit = params.get('limit')
                return _json_response(store.list(
                    target, namespace, self._selector(request, target),
                    limit=int(limit) if limit and limit.isdigit() else None,
                    continue_token=params.get('continue') or None))
            if method == 'POST':
                return _json_response(store.create(target, namespace, request.data, dry_run=dry_run), 201)
            if method == 'DELETE':
                options = DeleteOptions.parse(request.data, params)
                return _json_response(store.delete_collection(
                    target, namespace, self._selector(request, target), options))
        else:
            assert name is not None  # an OBJECT path always has a name
            if method == 'GET' and params.get('watch', '').lower() in TRUE and not path.subresource:
                return await self._watch(request, target, namespace, name)
            if method == 'GET':
                info = store.check(target, namespace, 'get')
                store.check_subresource(target, info, path.subresource)
                return _json_response(store.get(target, namespace, name))
            if method == 'PUT':
                return _json_response(store.replace(target, namespace, name, request.data,
                                                    subresource=path.subresource, dry_run=dry_run))
            if method == 'PATCH':
                status, obj = store.patch(target, namespace, name, request.data, _header(request, 'content-type'),
                                          subresource=path.subresource, dry_run=dry_run)
                return _json_response(obj, status)
            if method == 'DELETE' and not path.subresource:
                status, obj = store.delete(target, namespace, name, DeleteOptions.parse(request.data, params))
                return _json_response(obj, status)
        store.info(target)
        raise errors.StatusError(405, 'MethodNotAllowed', f'{method} is not supported on {request.url.path}')

    def _selector(self, request: kmock.Request, target: Target) -> Selector:
        self.store.info(target)
        return Selector.parse(request.params.get('labelSelector'), request.params.get('fieldSelector'),
                              self.store.allowed_fields(target))

    async def _watch(self, request: kmock.Request, target: Target, namespace: str | None, name: str | None
                     ) -> aiohttp.web.StreamResponse:
        store, params = self.store, request.params
        info = store.check(target, namespace, 'watch', collection=True)
        selector = self._selector(request, target)
        selector = selector.with_name(name) if name is not None else selector
        log = store.log(target)
        since = params.get('resourceVersion') or ''
        send_initial = params.get('sendInitialEvents', '').lower() in TRUE
        try:
            timeout = float(params['timeoutSeconds']) if params.get('timeoutSeconds') else None
            cursor = store.rv if since in ('', '0') or send_initial else int(since)
        except ValueError as exc:
            raise errors.bad_request(f'invalid watch parameter: {exc}') from exc
        # Captured with no await in between: every later change is in the log after `cursor`.
        initial = store.matching(target, namespace, selector) if since in ('', '0') or send_initial else []
        expired = log.expired(cursor)

        assert request._raw_request is not None  # always set for requests that came over HTTP
        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        await response.prepare(request._raw_request)
        try:
            async with asyncio.timeout(timeout):
                for obj in initial:
                    await response.write(_event_line({'type': 'ADDED', 'object': obj}))
                if send_initial:
                    await response.write(_event_line({'type': 'BOOKMARK', 'object': {
                        'kind': info.kind, 'apiVersion': target.api_version,
                        'metadata': {'resourceVersion': str(cursor),
                                     'annotations': {'k8s.io/initial-events-end': 'true'}}}}))
                while not store.closed:
                    if expired or log.expired(cursor):
                        error = errors.gone(cursor)
                        await response.write(_event_line({'type': 'ERROR', 'object': error.body()}))
                        break
                    events = log.since(cursor)
                    if not events:
                        await log.changed()
                        continue
                    for event in events:
                        cursor = event.rv
                        if (line := self._watch_event(event, namespace, selector)) is not None:
                            await response.write(line)
        except (TimeoutError, ConnectionError):
            pass
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    @staticmethod
    def _watch_event(event: Event, namespace: str | None, selector: Selector) -> bytes | None:
        obj = event.obj
        if namespace is not None and meta_of(obj).get('namespace') != namespace:
            return None
        kind, matches = event.type, selector.matches(obj)
        if kind == 'MODIFIED' and selector and event.old is not None:
            matched = selector.matches(event.old)
            if matches and not matched:
                kind = 'ADDED'
            elif matched and not matches:
                kind, matches = 'DELETED', True
        return _event_line({'type': kind, 'object': obj}) if matches else None
