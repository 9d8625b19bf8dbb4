"""The soak's random events (seeded), over every kind of source object the front doors watch: ChuteGateways,
annotated HTTPRoutes, TunnelBindings, annotated Services, session Pods, HostMappings, IngressRoutes and an
IngressRouteTCP (create, edit: hostname changed, Access switched on or off, tunnel reference changed, a HostMapping's
IP changed, an alias or a second host added or removed; delete; recreate with the same name), and the objects they
stand on (the API token Secrets, the tenant, Tunnel t1) deleted and restored. The IngressRouteTCP has the name of an
IngressRoute (``ir1``): the two are one router-hosts source, whose entries are their hosts' union.

Each source object has a slot of its own with hostnames of its own (two per slot, ``<slot>-a`` and ``<slot>-b``):
no two slots ever ask for one hostname, so the end state does not depend on who came first and a clean run of
the final objects is the reference (the one exception, a session's two IngressRoutes naming its host in the
router-hosts server, is compared whichever holds it: see :mod:`harness.soak_hosts`). Slots of even index always
ask for Access: their hostnames are the ones meant to be protected at every moment; odd slots switch Access on and
off (their hostnames are never checked). A router-hosts slot's variant ``b`` of ``hm3`` and ``ir2`` is held by a
foreign entry (refused while asked for)."""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness import soak_hosts
from harness.soak_world import (
    APPS_NS,
    EMAILS,
    GW_NS,
    HOSTS_NS,
    OPNS,
    SECRETS,
    SESSION_HASH_LABEL,
    SESSION_NS,
    SESSION_SELECTOR,
    SESSION_SUFFIX,
    SESSION_ZONE,
    TUNNEL_GROUP,
    ZONE,
    Foreign,
    Kube,
    secret_body,
    tenant_body,
    tunnel_body,
)

CHUTES = ("chutes.troubleshat.com", "v1alpha1")
ROUTES = ("gateway.networking.k8s.io", "v1")
CFZT = "cfzt.cloudflare.com/"
ACCESS_EMAILS = "chutes.troubleshat.com/access-allowed-emails"
TUNNEL_ANNOTATION = "tunnels.networking.cfargotunnel.com/"
SLOTS = {"gateway": 5, "route": 5, "binding": 3, "service": 3, "pod": 6, "mapping": 3, "ingress": 2, "tcp": 1}
HOSTS_KINDS = ("mapping", "ingress", "tcp")  # the router-hosts door's
PREFIXES = {"gateway": "g", "route": "r", "binding": "b", "service": "as", "pod": "p", "mapping": "hm", "ingress": "ir",
            "tcp": "it"}
TRAEFIK, HOSTMAPPINGS = ("traefik.io", "v1alpha1"), ("router-hosts.fzymgc.house", "v1alpha1")
ROUTE_KINDS = {"ingress": ("IngressRoute", "ingressroutes"), "tcp": ("IngressRouteTCP", "ingressroutetcps")}
STANDS_ON = ("secret:cf", "secret:cf-token", "secret:cloudflare-secrets", "tenant:home", "tunnel:t1")


@dataclass
class Slot:
    kind: str
    index: int
    live: bool = False  # what the user wants now
    variant: str = "a"
    access: bool = True
    tunnel: str = "t1"
    address: int = 0  # a HostMapping's IP: 192.168.<10 + address>.<index>
    extra: bool = False  # a HostMapping's alias, a route's second host

    @property
    def name(self) -> str:
        return PREFIXES[self.kind] + str(self.index)

    @property
    def object_name(self) -> str:
        """The IngressRouteTCP is named as IngressRoute ir1: one router-hosts source."""
        return f"ir{self.index}" if self.kind == "tcp" else self.name

    @property
    def protected(self) -> bool:
        return self.kind not in ("pod", *HOSTS_KINDS) and self.index % 2 == 0

    @property
    def cloudflare(self) -> bool:
        """Published through Cloudflare (a record for its hostname), not in the router-hosts server."""
        return self.kind not in HOSTS_KINDS

    @property
    def hostname(self) -> str:
        if self.kind == "pod":
            return f"{self.session_hash}{SESSION_SUFFIX}.{SESSION_ZONE}"
        if self.kind in HOSTS_KINDS:
            return f"{self.name}-{self.variant}.lan"
        prefix = {"gateway": "g", "route": "r", "binding": "b", "service": "s"}[self.kind]
        return f"{prefix}{self.index}-{self.variant}.{ZONE}"

    @property
    def session_hash(self) -> str:
        return f"soak{self.index}{self.variant}"


@dataclass
class Events:
    """The generator and what it asked for: `slots` (the wanted end state), `gone` (what stands on: deleted now),
    `pending` (creates refused while the previous object of the name is still being deleted), counts by kind."""

    k: Kube
    cf: Any
    foreign: Foreign
    seed: int
    slots: list[Slot] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)  # slot names and STANDS_ON entries to create again
    counts: Counter[str] = field(default_factory=Counter)
    protected: frozenset[str] = frozenset()  # read by the protection watch on the emulator's thread
    stands_firm: bool = False  # set near the end: what sources stand on is no longer deleted
    tunnel_deletes: bool = True  # Tunnel t1 among what is deleted and restored (see harness.soak.run)
    service_moves: bool = True  # annotated Services switched between Tunnels (see harness.soak.run)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.slots = [Slot(kind, i) for kind, n in SLOTS.items() for i in range(1, n + 1)]
        for slot in self.slots:
            slot.access = slot.protected or self.rng.random() < 0.5
        self._update_protected()

    def _update_protected(self) -> None:
        self.protected = frozenset(h for s in self.slots if s.protected for h in (_with(s, "a"), _with(s, "b")))

    # -- one event ----------------------------------------------------------------------------
    def step(self) -> str:
        """One random event applied; its description."""
        self.retry_pending()
        if self.rng.random() < 0.08 and not self.stands_firm:
            return self._stands_on()
        slot = self.rng.choice(self.slots)
        if slot.name in self.pending:
            return self._count("wait", f"{slot.name}: its recreate is pending")
        if not slot.live:
            slot.live = True
            self._create(slot)
            return self._count(f"{slot.kind} create", f"create {slot.name} {slot.hostname} access={slot.access}")
        choices: list[tuple[str, Callable[[Slot], str]]] = [("delete", self._delete), ("recreate", self._recreate),
                                                            ("hostname", self._rename)]
        if slot.kind != "pod" and slot.cloudflare and not slot.protected:
            choices.append(("access", self._toggle_access))
        if slot.kind == "binding" or (slot.kind == "service" and self.service_moves):
            choices.append(("tunnel", self._switch_tunnel))
        if slot.kind == "mapping":
            choices.append(("address", self._move_address))
        if slot.kind in HOSTS_KINDS:
            choices.append(("alias" if slot.kind == "mapping" else "hosts", self._toggle_extra))
        what, act = self.rng.choice(choices)
        return self._count(f"{slot.kind} {what}", act(slot))

    def _count(self, kind: str, text: str) -> str:
        self.counts[kind] += 1
        return text

    def _delete(self, slot: Slot) -> str:
        slot.live = False
        self._remove(slot)
        return f"delete {slot.name}"

    def _recreate(self, slot: Slot) -> str:
        self._remove(slot)
        self._create(slot)
        return f"recreate {slot.name} {slot.hostname}"

    def _rename(self, slot: Slot) -> str:
        slot.variant = "b" if slot.variant == "a" else "a"
        self._edit(slot)
        return f"hostname {slot.name} -> {slot.hostname}"

    def _toggle_access(self, slot: Slot) -> str:
        slot.access = not slot.access
        self._edit(slot)
        return f"access {slot.name} {'on' if slot.access else 'off'}"

    def _switch_tunnel(self, slot: Slot) -> str:
        slot.tunnel = "t2" if slot.tunnel == "t1" else "t1"
        self._edit(slot)
        return f"tunnelRef {slot.name} -> {slot.tunnel}"

    def _move_address(self, slot: Slot) -> str:
        slot.address = (slot.address + 1) % 3
        self._edit(slot)
        return f"ip {slot.name} -> {mapping_ip(slot)}"

    def _toggle_extra(self, slot: Slot) -> str:
        slot.extra = not slot.extra
        self._edit(slot)
        return f"{'alias' if slot.kind == 'mapping' else 'second host'} {slot.name} {'on' if slot.extra else 'off'}"

    def _stands_on(self) -> str:
        what = self.rng.choice(STANDS_ON if self.tunnel_deletes else [x for x in STANDS_ON if x != "tunnel:t1"])
        if what in self.gone or what in self.pending:
            self.gone.discard(what)
            self.pending.add(what)
            self.retry_pending()
            return self._count("restore", f"restore {what}")
        self.gone.add(what)
        kind, name = what.split(":")
        _ignore_missing(lambda: self._delete_stand(kind, name))
        return self._count(f"{kind} delete", f"delete {what}")

    def _delete_stand(self, kind: str, name: str) -> None:
        if kind == "secret":
            self.k.core.delete_namespaced_secret(name, SECRETS[name][0], _preload_content=False)
        elif kind == "tenant":
            self.k.custom.delete_namespaced_custom_object("cfzt.cloudflare.com", "v1alpha1", OPNS,
                                                          "cloudflarezerotrusttenants", name)
        else:
            self.k.custom.delete_namespaced_custom_object(TUNNEL_GROUP, "v1alpha2", APPS_NS, "tunnels", name)

    # -- the objects --------------------------------------------------------------------------
    def retry_pending(self) -> None:
        """Create what a previous delete still held (a finalizer at work), now that it may be gone."""
        for key in sorted(self.pending):
            if ":" in key:
                kind, name = key.split(":")
                if _created(functools.partial(self._create_stand, kind, name)):
                    self.pending.discard(key)
            else:
                slot = next(s for s in self.slots if s.name == key)
                if not slot.live or _created(functools.partial(self._create_now, slot)):
                    self.pending.discard(key)

    def _create_stand(self, kind: str, name: str) -> None:
        if kind == "secret":
            self.k.core.create_namespaced_secret(SECRETS[name][0], secret_body(name))
        elif kind == "tenant":
            self.k.custom.create_namespaced_custom_object("cfzt.cloudflare.com", "v1alpha1", OPNS,
                                                          "cloudflarezerotrusttenants",
                                                          tenant_body(self.cf, self.foreign))
        else:
            self.k.custom.create_namespaced_custom_object(TUNNEL_GROUP, "v1alpha2", APPS_NS, "tunnels",
                                                          tunnel_body(self.cf, name, self.foreign))

    def _create(self, slot: Slot) -> None:
        if not _created(lambda: self._create_now(slot)):
            self.pending.add(slot.name)

    def _create_now(self, slot: Slot) -> None:
        k = self.k
        if slot.kind == "gateway":
            k.custom.create_namespaced_custom_object(*CHUTES, GW_NS, "chutegateways", gateway_body(slot))
        elif slot.kind == "route":
            k.custom.create_namespaced_custom_object(*ROUTES, APPS_NS, "httproutes", route_body(slot))
        elif slot.kind == "binding":
            k.custom.create_namespaced_custom_object(TUNNEL_GROUP, "v1alpha1", APPS_NS, "tunnelbindings",
                                                     binding_body(slot))
        elif slot.kind == "service":
            k.core.create_namespaced_service(APPS_NS, service_body(slot))
        elif slot.kind == "mapping":
            k.custom.create_namespaced_custom_object(*HOSTMAPPINGS, HOSTS_NS, "hostmappings", hostmapping_body(slot))
        elif slot.kind in ROUTE_KINDS:
            k.custom.create_namespaced_custom_object(*TRAEFIK, HOSTS_NS, ROUTE_KINDS[slot.kind][1],
                                                     traefik_body(slot))
        else:
            k.core.create_namespaced_pod(SESSION_NS, pod_body(slot))

    def _remove(self, slot: Slot) -> None:
        k = self.k
        self.pending.discard(slot.name)
        if slot.kind == "gateway":
            _ignore_missing(lambda: k.custom.delete_namespaced_custom_object(*CHUTES, GW_NS, "chutegateways",
                                                                             slot.name))
        elif slot.kind == "route":
            _ignore_missing(lambda: k.custom.delete_namespaced_custom_object(*ROUTES, APPS_NS, "httproutes", slot.name))
        elif slot.kind == "binding":
            _ignore_missing(lambda: k.custom.delete_namespaced_custom_object(
                TUNNEL_GROUP, "v1alpha1", APPS_NS, "tunnelbindings", slot.name))
        elif slot.kind == "service":
            _ignore_missing(lambda: k.core.delete_namespaced_service(slot.name, APPS_NS, _preload_content=False))
        elif slot.kind == "mapping":
            _ignore_missing(lambda: k.custom.delete_namespaced_custom_object(*HOSTMAPPINGS, HOSTS_NS, "hostmappings",
                                                                             slot.name))
        elif slot.kind in ROUTE_KINDS:
            _ignore_missing(lambda: k.custom.delete_namespaced_custom_object(
                *TRAEFIK, HOSTS_NS, ROUTE_KINDS[slot.kind][1], slot.object_name))
        else:
            _ignore_missing(lambda: k.core.delete_namespaced_pod(slot.name, SESSION_NS, grace_period_seconds=0,
                                                                     _preload_content=False))

    def _edit(self, slot: Slot) -> None:
        """The object as the slot now says (a merge patch; a Pod's hash label patched in place)."""
        if slot.name in self.pending:
            return  # created as the slot says once it can be
        k = self.k
        if slot.kind == "gateway":
            spec = gateway_body(slot)["spec"]
            spec["access"] = {"allowedEmails": EMAILS, "public": None} if slot.access else {
                "public": True, "allowedEmails": None}
            act: Callable[[], Any] = lambda: k.custom.patch_namespaced_custom_object(  # noqa: E731
                *CHUTES, GW_NS, "chutegateways", slot.name, {"spec": spec})
        elif slot.kind == "route":
            annotations: dict[str, Any] = route_body(slot)["metadata"]["annotations"]
            annotations.setdefault(CFZT + "access.allowEmails", None)
            act = lambda: k.custom.patch_namespaced_custom_object(  # noqa: E731
                *ROUTES, APPS_NS, "httproutes", slot.name, {"metadata": {"annotations": annotations}})
        elif slot.kind == "binding":
            body = binding_body(slot)
            body["metadata"]["annotations"].setdefault(ACCESS_EMAILS, None)
            act = lambda: k.custom.patch_namespaced_custom_object(  # noqa: E731
                TUNNEL_GROUP, "v1alpha1", APPS_NS, "tunnelbindings", slot.name,
                {"metadata": body["metadata"], "subjects": body["subjects"], "tunnelRef": body["tunnelRef"]})
        elif slot.kind == "service":
            meta = service_body(slot)["metadata"]
            meta["annotations"].setdefault(ACCESS_EMAILS, None)
            act = lambda: k.core.patch_namespaced_service(slot.name, APPS_NS, {"metadata": meta})  # noqa: E731
        elif slot.kind == "mapping":
            spec = hostmapping_body(slot)["spec"]
            spec.setdefault("aliases", None)  # removed
            act = lambda: k.custom.patch_namespaced_custom_object(  # noqa: E731
                *HOSTMAPPINGS, HOSTS_NS, "hostmappings", slot.name, {"spec": spec})
        elif slot.kind in ROUTE_KINDS:
            act = lambda: k.custom.patch_namespaced_custom_object(  # noqa: E731
                *TRAEFIK, HOSTS_NS, ROUTE_KINDS[slot.kind][1], slot.object_name, {"spec": traefik_body(slot)["spec"]})
        else:
            act = lambda: k.core.patch_namespaced_pod(slot.name, SESSION_NS, {  # noqa: E731
                "metadata": {"labels": {SESSION_HASH_LABEL: slot.session_hash}}})
        try:
            act()
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._create(slot)  # gone meanwhile (a delete still finishing): made again as the slot says

    # -- the end ----------------------------------------------------------------------------------
    def restore_all(self) -> None:
        """What sources stand on, deleted, is restored and no longer deleted (the soak ends on a complete world; done
        a few dozen events before the end, the retries of sources that waited for it happen during the events)."""
        self.stands_firm = True
        self.pending |= self.gone
        self.gone.clear()
        self.retry_pending()

    def wanted(self) -> list[Slot]:
        return [s for s in self.slots if s.live]


def _with(slot: Slot, variant: str) -> str:
    return Slot(slot.kind, slot.index, variant=variant).hostname


def _ignore_missing(act: Callable[[], Any]) -> None:
    try:
        act()
    except ApiException as exc:
        if exc.status != 404:
            raise


def _created(act: Callable[[], Any]) -> bool:
    """True once made; False while the name is still held by an object being deleted (409)."""
    try:
        act()
    except ApiException as exc:
        if exc.status != 409:
            raise
        return False
    return True


def gateway_body(slot: Slot) -> dict[str, Any]:
    return {"apiVersion": "/".join(CHUTES), "kind": "ChuteGateway", "metadata": {"name": slot.name},
            "spec": {"configRef": "default", "hostname": f"g{slot.index}-{slot.variant}",
                     "service": {"name": "web", "port": 8080},
                     "access": {"allowedEmails": EMAILS} if slot.access else {"public": True}, "replicas": 1}}


def route_body(slot: Slot) -> dict[str, Any]:
    annotations = {CFZT + "enabled": "true", CFZT + "tenant": "home", CFZT + "hostname": slot.hostname,
                   CFZT + "access.enabled": "true" if slot.access else "false"}
    if slot.access:
        annotations[CFZT + "access.allowEmails"] = EMAILS[0]
    return {"apiVersion": "/".join(ROUTES), "kind": "HTTPRoute", "metadata": {"name": slot.name,
                                                                           "annotations": annotations},
            "spec": {"parentRefs": [{"name": "default"}],
                     "rules": [{"backendRefs": [{"name": f"svc{slot.index}", "port": 8080}]}]}}


def binding_body(slot: Slot) -> dict[str, Any]:
    return {"apiVersion": f"{TUNNEL_GROUP}/v1alpha1", "kind": "TunnelBinding",
            "metadata": {"name": slot.name, "annotations": {ACCESS_EMAILS: EMAILS[0]} if slot.access else {}},
            "subjects": [{"name": f"svc{slot.index}", "spec": {"fqdn": slot.hostname}}],
            "tunnelRef": {"kind": "Tunnel", "name": slot.tunnel}}


def service_body(slot: Slot) -> dict[str, Any]:
    annotations = {TUNNEL_ANNOTATION + "cr": slot.tunnel, TUNNEL_ANNOTATION + "fqdn": slot.hostname}
    if slot.access:
        annotations[ACCESS_EMAILS] = EMAILS[0]
    return {"metadata": {"name": slot.name, "annotations": annotations},
            "spec": {"ports": [{"port": 8080}], "selector": {"app": slot.name}}}


def mapping_ip(slot: Slot) -> str:
    return f"192.168.{10 + slot.address}.{slot.index}"


def hostmapping_body(slot: Slot) -> dict[str, Any]:
    alias = f"{slot.name}-alias.lan" if slot.extra else None
    return soak_hosts.mapping_body(slot.name, slot.hostname, mapping_ip(slot), alias)


def traefik_body(slot: Slot) -> dict[str, Any]:
    hostnames = [slot.hostname] + ([f"{slot.name}-x.lan"] if slot.extra else [])
    return soak_hosts.route_body(ROUTE_KINDS[slot.kind][0], slot.object_name, hostnames)


def pod_body(slot: Slot) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": slot.name, "labels": {**SESSION_SELECTOR, SESSION_HASH_LABEL: slot.session_hash}},
            "spec": {"containers": [{"name": "opencode", "image": "opencode:latest"}]}}


def apply_final(k: Kube, cf: Any, foreign: Foreign, slots: list[Slot]) -> None:
    """The reference run's input: the wanted objects of `slots`, made at once."""
    events = Events(k, cf, foreign, 0)
    events.slots = [replace(s, live=True) for s in slots]
    for slot in events.slots:
        events._create_now(slot)
