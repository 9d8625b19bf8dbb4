"""What a ChuteGateway should produce: names, the FQDN, the origin, Access rules and the cloudflared
manifests. Pure functions of the gateway's and its config's specs; no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chutes import conditions as c
from chutes.cloudflare_core.ownership import DEFAULT_OWNER, owned_name
from chutes.frontdoors import annotation_keys, cloudflared
from chutes.frontdoors.specs import SpecError as SpecError
from chutes.frontdoors.specs import email_include, is_hostname, is_int, malformed

GROUP = "chutes.troubleshat.com"
VERSION = "v1alpha1"
GATEWAY_PLURAL = "chutegateways"
CONFIG_PLURAL = "chuteconfigs"
GATEWAY_KIND = "ChuteGateway"
POLICY_NAME = "chute-operator-allow"  # the seed's (app-scoped) policy name
DEFAULT_IMAGE = "cloudflare/cloudflared:2024.8.3"
DEFAULT_ALLOWED_IMAGES = ("cloudflare/cloudflared",)  # the official repository (docker.io)
ANY_IMAGE = "*"
LABEL_GATEWAY = f"{GROUP}/gateway"
LABEL_OWNER = f"{GROUP}/owner"  # the owner id of the installation that made the object
MAX_LABEL_VALUE = 63
MAX_NAME = MAX_LABEL_VALUE - len("chute--cloudflared")  # a gateway's name is in its Deployment's label values
MANAGED_BY = "chutes-operator"
FRONT_DOOR = "chutes"  # the label of this front door in metrics
NAME_PREFIX = "chute-"  # of every tunnel and Access application name (see `cloudflare_name`)

# The ChuteGateway's kopf change handlers (ids as kopf forms them: ``<id>/<field>`` for a field filter), whose
# progress kopf keeps under our prefix while one is retried.
GATEWAY_HANDLER_IDS = ("reconcile", "reconcile/spec", "cleanup")
GATEWAY_ANNOTATIONS = annotation_keys.own_keys(GATEWAY_HANDLER_IDS)

MAX_REPLICAS = 20  # the CRD's maximum
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(s|m|h))+$")


@dataclass(frozen=True)
class DesiredGateway:
    namespace: str
    name: str
    fqdn: str
    service_url: str
    public: bool
    emails: tuple[str, ...]
    domains: tuple[str, ...]
    session_duration: str
    replicas: int
    image: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    owner_id: str = DEFAULT_OWNER

    @property
    def cloudflare_name(self) -> str:
        """Tunnel and Access application name: the seed's ``chute-<ns>-<name>``, owner-qualified for an owner id
        other than the default one (two installations never share a tunnel or an app)."""
        return cloudflare_name(self.namespace, self.name, self.owner_id)

    @property
    def source(self) -> str:
        return f"{GATEWAY_KIND}/{self.namespace}/{self.name}"

    @property
    def secret_name(self) -> str:
        return f"chute-{self.name}-tunnel-token"

    @property
    def deployment_name(self) -> str:
        return f"chute-{self.name}-cloudflared"

    @property
    def url(self) -> str:
        return f"https://{self.fqdn}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/instance": self.deployment_name,
                "app.kubernetes.io/managed-by": MANAGED_BY, LABEL_GATEWAY: self.name}

    @property
    def owned_by(self) -> dict[str, str]:
        """The labels that make a Secret or Deployment this gateway's (of this installation): one without them
        is never written nor deleted (:func:`chutes.kube.is_ours`)."""
        return owned_by(self.name, self.owner_id)

    @property
    def object_labels(self) -> dict[str, str]:
        """The labels of the Secret and the Deployment (the Pod template keeps :attr:`labels`: no rollout)."""
        return {**self.labels, **self.owned_by}


def owned_by(gateway: str, owner_id: str) -> dict[str, str]:
    """The ownership labels of gateway `gateway`'s Secret and Deployment made by installation `owner_id`."""
    return {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_GATEWAY: gateway, LABEL_OWNER: owner_id}


def cloudflare_name(namespace: str, name: str, owner_id: str = DEFAULT_OWNER) -> str:
    """The tunnel and Access application name of gateway `namespace`/`name` for `owner_id`."""
    return owned_name(f"{NAME_PREFIX}{namespace}-{name}", owner_id)


def resolve_hostname(hostname: str, domain: str) -> str:
    """``app`` → ``app.example.com``; ``app.example.com`` stays; anything outside the domain is refused."""
    host, zone = hostname.strip().lower().rstrip("."), domain.strip().lower().rstrip(".")
    if host == zone or host.endswith("." + zone):
        fqdn = host
    elif "." not in host:
        fqdn = f"{host}.{zone}"
    else:
        raise SpecError(c.HOSTNAME_OUTSIDE_ZONE, f"hostname {hostname!r} is not inside the zone {zone!r}")
    if not is_hostname(fqdn):
        raise SpecError(c.INVALID_SPEC, f"hostname {fqdn!r} is not a valid DNS name")
    return fqdn


def annotation_problems(annotations: Mapping[str, Any] | None) -> list[str]:
    """One message per ``chutes.troubleshat.com/`` key on a ChuteGateway that is neither ``adopt`` nor kopf's."""
    return annotation_keys.problems(annotations, (annotation_keys.PREFIX,), GATEWAY_ANNOTATIONS,
                                    annotation_keys.INPUT_KEYS)


def check_annotations(annotations: Mapping[str, Any] | None) -> None:
    """:class:`SpecError` (``InvalidSpec``) naming every unknown key under our prefix: a typo (``adopt``
    misspelt) must not be read as if the key were absent."""
    problems = annotation_problems(annotations)
    if problems:
        raise SpecError(c.INVALID_SPEC, "; ".join(problems))


def annotations_need_reconcile(annotations: Mapping[str, Any] | None, ready: Mapping[str, Any] | None) -> bool:
    """Whether an annotation change deserves a reconcile (the update handler watches only the spec): an unknown
    key the Ready condition does not name yet, or a refusal for unknown keys that are gone."""
    problems = annotation_problems(annotations)
    ready = ready or {}
    said = str(ready.get("message") or "") if ready.get("reason") == c.INVALID_SPEC else ""
    return said != "; ".join(problems) if problems else said.startswith(annotation_keys.UNKNOWN)


def _strings(where: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise SpecError(c.INVALID_SPEC, f"{where} must be a list of strings, not {value!r}")
    return tuple(sorted({item.strip().lower() for item in value if item.strip()}))


def image_repository(reference: str) -> str:
    """The repository of an image reference, registry included as Docker resolves it:
    ``cloudflare/cloudflared:2024.8.3`` → ``docker.io/cloudflare/cloudflared``, ``busybox`` →
    ``docker.io/library/busybox``, ``ghcr.io/x/y@sha256:…`` → ``ghcr.io/x/y``."""
    name = reference.strip().split("@", 1)[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1:]:
        name = name[: slash + 1] + name[slash + 1:].split(":", 1)[0]
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{first}".lower()
    if "." in first or ":" in first or first == "localhost":
        registry = "docker.io" if first in ("index.docker.io", "registry-1.docker.io") else first
        return f"{registry}/{rest}".lower()
    return f"docker.io/{name}".lower()


def image_allowed(reference: str, allowed: tuple[str, ...]) -> bool:
    """Whether an image's repository is one of `allowed`: a repository (``cloudflare/cloudflared``, the same as
    ``docker.io/cloudflare/cloudflared``) matches itself only, whatever the tag or digest; an entry ending with
    ``/`` (``registry.example.com/mirror/``) every repository below it; ``*`` any image."""
    repository = image_repository(reference)
    for entry in allowed:
        if entry == ANY_IMAGE:
            return True
        if entry.endswith("/"):
            prefix = image_repository(entry.rstrip("/") + "/x")[:-1]  # the registry resolved as for an image
            if repository.startswith(prefix):
                return True
        elif repository == image_repository(entry):
            return True
    return False


def desired_gateway(namespace: str, name: str, spec: Mapping[str, Any], domain: str,
                    owner_id: str = DEFAULT_OWNER,
                    allowed_images: tuple[str, ...] = DEFAULT_ALLOWED_IMAGES) -> DesiredGateway:
    """The gateway's desired state, or :class:`SpecError` naming what is wrong. Parsed strictly, whatever the CRD
    lets through: a boolean is ``true`` or ``false`` (the string ``"false"`` is not true), a port or a count is an
    integer (``True`` is not 1)."""
    if len(name) > MAX_NAME:  # the API server would refuse its Secret and Deployment, after the CNAME
        raise SpecError(c.INVALID_SPEC, f"metadata.name {name!r} is {len(name)} characters long, over {MAX_NAME}: the "
                        "label app.kubernetes.io/instance (chute-<name>-cloudflared) of its cloudflared Deployment "
                        f"holds at most {MAX_LABEL_VALUE}: use a shorter name")
    service = spec.get("service") or {}
    access = spec.get("access") or {}
    scheme = service.get("scheme") or "http"
    port = service.get("port")
    if not isinstance(service.get("name"), str) or not service["name"] or not is_int(port) or not 1 <= port <= 65535:
        raise SpecError(c.INVALID_SPEC, f"spec.service needs a name and a port between 1 and 65535, not {port!r}")
    if scheme not in ("http", "https"):
        raise SpecError(c.INVALID_SPEC, f"spec.service.scheme must be http or https, not {scheme!r}")
    emails = _strings("spec.access.allowedEmails", access.get("allowedEmails"))
    domains = _strings("spec.access.allowedDomains", access.get("allowedDomains"))
    public = access.get("public")
    public = False if public is None else public
    if not isinstance(public, bool):
        raise SpecError(c.INVALID_SPEC, f"spec.access.public must be true or false, not {public!r}")
    if not public and not emails and not domains:
        raise SpecError(c.INVALID_SPEC, "spec.access needs at least one allowedEmails or allowedDomains entry, "
                        "unless access.public is true")
    duration = access.get("sessionDuration") or "24h"
    if not isinstance(duration, str) or not _DURATION.match(duration):
        raise SpecError(c.INVALID_SPEC, f"spec.access.sessionDuration {duration!r} is not a duration like 24h or 30m")
    replicas = spec.get("replicas", 2)
    if not is_int(replicas) or not 0 <= replicas <= MAX_REPLICAS:
        raise SpecError(c.INVALID_SPEC, f"spec.replicas must be an integer from 0 to {MAX_REPLICAS}, not {replicas!r}")
    refused = malformed(emails, domains)
    if refused:  # the CRD's patterns refuse them; an unvalidated object would get a policy nobody matches
        listed = ", ".join(map(repr, refused))
        raise SpecError(c.INVALID_SPEC, f"spec.access: not an email address or a domain: {listed}")
    hostname = spec.get("hostname") or ""
    if not isinstance(hostname, str):
        raise SpecError(c.INVALID_SPEC, f"spec.hostname must be a string, not {hostname!r}")
    cloudflared = spec.get("cloudflared") or {}
    image = str(cloudflared.get("image") or DEFAULT_IMAGE)
    if not image_allowed(image, allowed_images):
        raise SpecError(c.IMAGE_NOT_ALLOWED, f"spec.cloudflared.image {image!r} is not an allowed cloudflared image "
                        f"(allowed: {', '.join(allowed_images)}; setting CHUTES_CLOUDFLARED_IMAGES)")
    url = f"{scheme}://{service['name']}.{namespace}.svc.cluster.local:{port}"
    return DesiredGateway(namespace, name, resolve_hostname(hostname, domain), url, public, emails, domains, duration,
                          replicas, image, dict(cloudflared.get("resources") or {}), owner_id)


def policy_include(desired: DesiredGateway) -> list[dict[str, Any]]:
    """The allow policy's include rules: one per email, one per email domain."""
    return email_include(desired.emails, desired.domains)


def allowed_counts(include: Iterable[Mapping[str, Any]]) -> str:
    """``N email(s) and M domain(s) allowed`` by an allow policy's include rules."""
    rules = list(include)
    emails = sum(1 for rule in rules if "email" in rule)
    domains = sum(1 for rule in rules if "email_domain" in rule)
    return f"{emails} email(s) and {domains} domain(s) allowed"


def access_differences(desired: DesiredGateway, live_session: str | None,
                       live_include: Iterable[Mapping[str, Any]]) -> str:
    """How the live Access application and policy differ from the desired state ("" when they do not)."""
    def key(rule: Mapping[str, Any]) -> str:
        return json.dumps(rule, sort_keys=True, default=str)

    live = list(live_include)
    differences = []
    if sorted(map(key, live)) != sorted(map(key, policy_include(desired))):
        differences.append(f"{allowed_counts(live)} (the spec: {len(desired.emails)} email(s) and "
                           f"{len(desired.domains)} domain(s))")
    if live_session is not None and live_session != desired.session_duration:
        differences.append(f"session duration {live_session} (the spec: {desired.session_duration})")
    return "; ".join(differences)


def connector(desired: DesiredGateway) -> cloudflared.Connector:
    """The gateway's cloudflared (:mod:`chutes.frontdoors.cloudflared`)."""
    return cloudflared.Connector(
        name=desired.deployment_name, namespace=desired.namespace, secret_name=desired.secret_name,
        labels=desired.object_labels, pod_labels=desired.labels,
        selector={"app.kubernetes.io/name": "cloudflared", LABEL_GATEWAY: desired.name},
        image=desired.image, replicas=desired.replicas, resources=desired.resources,
    )


def secret_manifest(desired: DesiredGateway, tunnel_token: str) -> dict[str, Any]:
    return cloudflared.secret_manifest(connector(desired), tunnel_token)


def deployment_manifest(desired: DesiredGateway) -> dict[str, Any]:
    return cloudflared.deployment_manifest(connector(desired))
