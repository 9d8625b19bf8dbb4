"""Background controllers: ownerReference garbage collection and namespace termination.

Like kube-controller-manager's garbage collector (background propagation): once an owner is gone, its
dependents are deleted (their own finalizers still apply), or, if the owner was deleted with
``propagationPolicy=Orphan``, the reference is removed and the dependent stays. A dependent with at least
one live owner only loses the references to the gone ones. A terminating Namespace gets its content deleted
and is removed once it is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chutes.sandbox.kubernetes import errors
from chutes.sandbox.kubernetes.store import JSON, NAMESPACES, Key, Store, meta_of

logger = logging.getLogger(__name__)


class Collector:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.on_change = self._wakeup.set

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name='kube-sandbox-collector')

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                self.sweep()
            except Exception:  # a bug here must not stop future collections
                logger.exception('Garbage collection failed.')

    def sweep(self) -> int:
        """One pass over all objects; returns how many changes it made (each wakes the next pass)."""
        store = self.store
        live = list(store.live())
        alive = {str(meta_of(obj).get('uid')) for _, obj in live}
        changes = 0
        for key, obj in live:
            refs = meta_of(obj).get('ownerReferences') or []
            gone = [ref for ref in refs if str(ref.get('uid')) not in alive]
            if not gone:
                continue
            keeps_owner = len(gone) < len(refs)
            orphaned = all(str(ref.get('uid')) in store.orphaned for ref in gone)
            changes += self._strip(key, gone) if keeps_owner or orphaned else self._delete(key, obj)
        for key, obj in live:
            if key[0] == NAMESPACES.resource and meta_of(obj).get('deletionTimestamp'):
                changes += self._terminate(key, str(meta_of(obj).get('name')), live)
        return changes

    def _strip(self, key: Key, gone: list[JSON]) -> int:
        uids = {str(ref.get('uid')) for ref in gone}

        def strip(obj: JSON) -> None:
            refs = [ref for ref in obj['metadata'].get('ownerReferences') or [] if str(ref.get('uid')) not in uids]
            if refs:
                obj['metadata']['ownerReferences'] = refs
            else:
                obj['metadata'].pop('ownerReferences', None)

        with contextlib.suppress(errors.StatusError):
            self.store.update_key(key, strip)
            return 1
        return 0

    def _delete(self, key: Key, obj: JSON) -> int:
        if meta_of(obj).get('deletionTimestamp'):
            return 0
        with contextlib.suppress(errors.StatusError):
            self.store.delete_key(key)
            return 1
        return 0

    def _terminate(self, key: Key, namespace: str, live: list[tuple[Key, JSON]]) -> int:
        content = [(k, obj) for k, obj in live if k[1] == namespace]
        changes = sum(self._delete(k, obj) for k, obj in content)
        if not content:
            def finalize(obj: JSON) -> None:
                obj.setdefault('spec', {})['finalizers'] = []

            with contextlib.suppress(errors.StatusError):
                self.store.update_key(key, finalize)
                changes += 1
        return changes
